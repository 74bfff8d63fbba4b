//! What every handler shares.
//!
//! Routing clones the state for every layer a request passes through, so it
//! is one `Arc`: a clone is a reference count, whatever the services hold.

use std::ops::Deref;
use std::sync::Arc;

use crate::audit::Auditor;
use crate::clusters::Registry;
use crate::config::Config;
use crate::identity::Authenticator;
use crate::objects::ObjectQueries;
use crate::permissions::Policy;
use crate::upstream::Upstreams;

/// The application state handlers extract; it dereferences to [`Services`].
#[derive(Clone)]
pub struct AppState(Arc<Services>);

/// The services behind [`AppState`].
pub struct Services {
    pub config: Arc<Config>,
    pub registry: Registry,
    pub authenticator: Arc<Authenticator>,
    pub policy: Arc<Policy>,
    pub upstreams: Upstreams,
    pub objects: ObjectQueries,
    pub auditor: Auditor,
    pub metrics: crate::telemetry::SharedMetrics,
    pub recording: Arc<crate::audit::recording::RecordingPolicy>,
    pub tickets: crate::proxy::tickets::Tickets,
    /// The address this process listens on, once it does.
    pub own_address: std::sync::OnceLock<std::net::SocketAddr>,
}

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}
