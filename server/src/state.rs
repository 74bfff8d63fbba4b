//! What every handler shares.

use std::sync::Arc;

use crate::audit::Auditor;
use crate::clusters::Registry;
use crate::config::Config;
use crate::identity::Authenticator;
use crate::objects::ObjectQueries;
use crate::permissions::Policy;
use crate::upstream::Upstreams;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub registry: Registry,
    pub authenticator: Arc<Authenticator>,
    pub policy: Arc<Policy>,
    pub upstreams: Upstreams,
    pub objects: ObjectQueries,
    pub auditor: Auditor,
    pub metrics: crate::telemetry::SharedMetrics,
    pub recording: Arc<crate::proxy::recording::RecordingPolicy>,
    pub tickets: crate::proxy::tickets::Tickets,
}
