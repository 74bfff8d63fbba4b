//! kubeportal's integration tests, one module per concern, in one binary (the
//! server is linked once). Tests that install a process-wide tracing
//! subscriber (`cluster_logs`, `redaction`, `tracing`) are binaries of their
//! own.

mod browser_exec;
mod faults;
mod fleet;
mod hostile;
mod identity;
mod kubectl;
mod objects;
mod openapi;
mod operations;
mod path_safety;
mod policy;
mod policy_fidelity;
mod proxy;
mod proxy_tls;
mod recording;
mod recording_fidelity;
mod registry_api;
mod replicas;
mod security;
mod store_contract;
mod tenants;
