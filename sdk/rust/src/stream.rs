//! Line-oriented streams over a response body: followed pod logs and watches.

use bytes::{Bytes, BytesMut};
use futures::stream::{self, Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::Error;

/// The kind of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum WatchEventType {
    Added,
    Modified,
    Deleted,
    Bookmark,
    /// `object` is a Kubernetes `Status`, e.g. 410 `Expired`.
    Error,
}

/// One event of a Kubernetes watch stream.
#[derive(Debug, Clone, Deserialize)]
pub struct WatchEvent<T> {
    #[serde(rename = "type")]
    pub event_type: WatchEventType,
    pub object: T,
}

/// Splits a byte stream into lines as they arrive: each line is yielded once
/// its newline is read (a line split across chunks is joined), `\r\n` is
/// accepted, and a last line without a newline is yielded at the end. Bytes
/// that are not UTF-8 are replaced, as logs may hold anything.
pub fn lines<S, E>(body: S) -> impl Stream<Item = Result<String, Error>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    Error: From<E>,
{
    struct State<S> {
        body: S,
        pending: BytesMut,
        ended: bool,
    }
    let state = State {
        body,
        pending: BytesMut::new(),
        ended: false,
    };
    stream::unfold(state, |mut state| async move {
        loop {
            if let Some(newline) = state.pending.iter().position(|byte| *byte == b'\n') {
                let line = state.pending.split_to(newline + 1);
                return Some((Ok(text(&line[..newline])), state));
            }
            if state.ended {
                if state.pending.is_empty() {
                    return None;
                }
                let rest = state.pending.split();
                return Some((Ok(text(&rest)), state));
            }
            match state.body.next().await {
                Some(Ok(chunk)) => state.pending.extend_from_slice(&chunk),
                Some(Err(error)) => {
                    state.ended = true;
                    state.pending.clear();
                    return Some((Err(Error::from(error)), state));
                }
                None => state.ended = true,
            }
        }
    })
}

fn text(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(line).into_owned()
}

/// Watch events from the lines of a watch body (blank lines are skipped).
pub(crate) fn events<T, S>(lines: S) -> impl Stream<Item = Result<WatchEvent<T>, Error>>
where
    T: DeserializeOwned,
    S: Stream<Item = Result<String, Error>>,
{
    lines.filter_map(|line| async move {
        match line {
            Ok(line) if line.trim().is_empty() => None,
            Ok(line) => Some(serde_json::from_str(&line).map_err(Error::from)),
            Err(error) => Some(Err(error)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, Error>> + Unpin {
        stream::iter(
            parts
                .iter()
                .map(|part| Ok(Bytes::from_static(part)))
                .collect::<Vec<_>>(),
        )
    }

    fn collect(parts: &[&'static [u8]]) -> Vec<String> {
        block_on(
            lines(chunks(parts))
                .map(|line| line.expect("no error"))
                .collect(),
        )
    }

    #[test]
    fn joins_lines_split_across_chunks() {
        assert_eq!(
            collect(&[b"al", b"pha\nbe", b"ta\n\ngam", b"ma\n"]),
            ["alpha", "beta", "", "gamma"]
        );
    }

    #[test]
    fn accepts_crlf_and_a_last_line_without_newline() {
        assert_eq!(
            collect(&[b"one\r\ntwo\r", b"\nthree"]),
            ["one", "two", "three"]
        );
    }

    #[test]
    fn joins_a_character_split_across_chunks() {
        let text = "größe ✓\n".as_bytes();
        let (first, second) = text.split_at(3); // inside "ö"
        let first: &'static [u8] = Box::leak(first.to_vec().into_boxed_slice());
        let second: &'static [u8] = Box::leak(second.to_vec().into_boxed_slice());
        assert_eq!(collect(&[first, second]), ["größe ✓"]);
    }

    #[test]
    fn parses_watch_events() {
        let events: Vec<WatchEvent<serde_json::Value>> = block_on(
            events(lines(chunks(&[
                b"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n\n",
                b"{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n",
            ])))
            .map(|event| event.expect("an event"))
            .collect(),
        );
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event_type, WatchEventType::Added);
        assert_eq!(events[1].event_type, WatchEventType::Deleted);
        assert_eq!(events[1].object["metadata"]["name"], "a");
    }
}
