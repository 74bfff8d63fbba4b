//! What every handler shares, and the part each takes of it.
//!
//! Routing clones the state for every layer a request passes through, so it
//! is one `Arc`: a clone is a reference count, whatever the services hold.
//! Handlers extract only what they use (`State<Registry>`, `State<ProxyState>`,
//! …), through the [`FromRef`] implementations here.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;

use crate::audit::recording::RecordingPolicy;
use crate::audit::Auditor;
use crate::clusters::{OwnAddress, Registry};
use crate::config::Config;
use crate::identity::Authenticator;
use crate::objects::ObjectQueries;
use crate::permissions::Policy;
use crate::proxy::ProxyState;

/// The application state handlers extract; it dereferences to [`Services`].
#[derive(Clone)]
pub struct AppState(Arc<Services>);

/// The services behind [`AppState`].
pub struct Services {
    pub config: Arc<Config>,
    pub registry: Registry,
    pub authenticator: Arc<Authenticator>,
    pub policy: Arc<Policy>,
    pub objects: ObjectQueries,
    pub proxy: ProxyState,
    pub auditor: Auditor,
    pub metrics: crate::telemetry::SharedMetrics,
    pub recording: Arc<RecordingPolicy>,
    /// The address this process listens on, once it does.
    pub own_address: OwnAddress,
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

/// The authenticator, for the [`Caller`](crate::identity::Caller) extractor.
impl FromRef<AppState> for Arc<Authenticator> {
    fn from_ref(state: &AppState) -> Self {
        state.authenticator.clone()
    }
}

impl FromRef<AppState> for Arc<Policy> {
    fn from_ref(state: &AppState) -> Self {
        state.policy.clone()
    }
}

impl FromRef<AppState> for Registry {
    fn from_ref(state: &AppState) -> Self {
        state.registry.clone()
    }
}

impl FromRef<AppState> for OwnAddress {
    fn from_ref(state: &AppState) -> Self {
        state.own_address.clone()
    }
}

impl FromRef<AppState> for Auditor {
    fn from_ref(state: &AppState) -> Self {
        state.auditor.clone()
    }
}

impl FromRef<AppState> for Arc<RecordingPolicy> {
    fn from_ref(state: &AppState) -> Self {
        state.recording.clone()
    }
}

impl FromRef<AppState> for ObjectQueries {
    fn from_ref(state: &AppState) -> Self {
        state.objects.clone()
    }
}

impl FromRef<AppState> for ProxyState {
    fn from_ref(state: &AppState) -> Self {
        state.proxy.clone()
    }
}
