//! The bytes of recent list answers, so that a repeated list of unchanged
//! data is not serialized again. Keyed by the request (resource, namespace,
//! query, representation) and valid for one resourceVersion of the store:
//! any write changes the version, and the next list is rendered afresh. The
//! answer is byte for byte what rendering would give.
//!
//! The API server keeps its own machine busy serializing; a double shares
//! the machine with what it is testing. Benchmarks that stand many doubles
//! for remote clusters would otherwise measure the doubles' CPU.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

/// Most answers kept; past this the cache starts over.
const ENTRIES: usize = 64;

#[derive(Default)]
pub(crate) struct ListCache {
    entries: Mutex<HashMap<String, (u64, Bytes)>>,
}

impl ListCache {
    /// The answer to `key` rendered at `version`, if kept.
    pub(crate) fn get(&self, key: &str, version: u64) -> Option<Bytes> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        entries
            .get(key)
            .filter(|(kept, _)| *kept == version)
            .map(|(_, body)| body.clone())
    }

    pub(crate) fn put(&self, key: String, version: u64, body: Bytes) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if entries.len() >= ENTRIES && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, (version, body));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_kept_for_its_version_only() {
        let cache = ListCache::default();
        cache.put("pods".into(), 7, Bytes::from_static(b"{}"));
        assert_eq!(cache.get("pods", 7), Some(Bytes::from_static(b"{}")));
        assert_eq!(cache.get("pods", 8), None);
        assert_eq!(cache.get("services", 7), None);
        for index in 0..ENTRIES {
            cache.put(format!("key-{index}"), 1, Bytes::new());
        }
        assert!(cache.entries.lock().unwrap().len() <= ENTRIES);
    }
}
