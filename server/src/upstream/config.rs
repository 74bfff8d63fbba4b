//! The settings of `kubernetes:` that say how clusters are called: the
//! timeouts, the streams one connection carries, and the names portal refs
//! impersonate as.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// `kubernetes.timeouts:` in the configuration, in milliseconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamTimeouts {
    #[serde(default = "default_connect_ms")]
    pub connect_ms: u64,
    /// How long a cluster may take to answer a request that names no
    /// `timeout`: by default the API server's own 60 s, and time for its
    /// answer to arrive.
    #[serde(default = "default_response_header_ms")]
    pub response_header_ms: u64,
    /// The most a request's own `?timeout=` can ask for (the cluster's own
    /// `--request-timeout` still caps it).
    #[serde(default = "default_max_response_header_ms")]
    pub max_response_header_ms: u64,
}

impl Default for UpstreamTimeouts {
    fn default() -> Self {
        Self {
            connect_ms: default_connect_ms(),
            response_header_ms: default_response_header_ms(),
            max_response_header_ms: default_max_response_header_ms(),
        }
    }
}

/// What a cluster is given beyond a request's own `timeout` to send the
/// answer it produces when that time runs out.
const ANSWER_GRACE: Duration = Duration::from_secs(5);

impl UpstreamTimeouts {
    pub fn connect(&self) -> Duration {
        Duration::from_millis(self.connect_ms)
    }

    pub fn response_header(&self) -> Duration {
        Duration::from_millis(self.response_header_ms)
    }

    /// How long to wait for a cluster's response headers: the request's own
    /// `timeout` (as the API server reads it) and a grace for the cluster's
    /// answer, capped by `maxResponseHeaderMs`; the default otherwise.
    pub fn response_header_for(&self, requested: Option<Duration>) -> Duration {
        match requested {
            Some(requested) => requested
                .saturating_add(ANSWER_GRACE)
                .min(Duration::from_millis(self.max_response_header_ms)),
            None => self.response_header(),
        }
    }
}

fn default_connect_ms() -> u64 {
    5_000
}

fn default_response_header_ms() -> u64 {
    65_000
}

fn default_max_response_header_ms() -> u64 {
    300_000
}

/// Most long-lived streams one upstream connection may carry.
const MOST_STREAMS_PER_CONNECTION: usize = 1000;

/// What is wrong with the upstream settings, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamConfigError {
    #[error("kubernetes.timeouts.{key}: must be greater than zero")]
    ZeroTimeout { key: &'static str },
    #[error("kubernetes.timeouts.maxResponseHeaderMs: must be at least responseHeaderMs")]
    MaxBelowDefault,
    #[error("kubernetes.streamsPerConnection: must be from 1 to {MOST_STREAMS_PER_CONNECTION}")]
    StreamsPerConnection,
}

impl UpstreamTimeouts {
    /// Checks that every timeout leaves time to answer.
    pub fn validate(&self) -> Result<(), UpstreamConfigError> {
        for (key, value) in [
            ("connectMs", self.connect_ms),
            ("responseHeaderMs", self.response_header_ms),
        ] {
            if value == 0 {
                return Err(UpstreamConfigError::ZeroTimeout { key });
            }
        }
        if self.max_response_header_ms < self.response_header_ms {
            return Err(UpstreamConfigError::MaxBelowDefault);
        }
        Ok(())
    }
}

/// Checks `kubernetes.streamsPerConnection`.
pub fn validate_streams_per_connection(streams: usize) -> Result<(), UpstreamConfigError> {
    if (1..=MOST_STREAMS_PER_CONNECTION).contains(&streams) {
        Ok(())
    } else {
        Err(UpstreamConfigError::StreamsPerConnection)
    }
}

/// Portal ref → Kubernetes user or group name; refs not listed pass as they are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImpersonationConfig {
    #[serde(default)]
    pub users: BTreeMap<String, String>,
    #[serde(default)]
    pub groups: BTreeMap<String, String>,
}
