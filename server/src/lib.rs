//! kubeportal: the Kubernetes backend of a developer portal.
//!
//! Request flow: `identity/` (who) → `permissions/` (may they) → `clusters/`
//! (which cluster, from `store/`) → the proxy and object queries. Errors become
//! HTTP only in `error.rs`; configuration is read only in `config.rs`.

pub mod app;
pub mod audit;
pub mod clusters;
pub mod config;
pub mod context;
pub mod error;
pub mod extract;
pub mod health;
pub mod identity;
pub mod kubernetes;
pub mod objects;
pub mod openapi;
pub mod permissions;
pub mod proxy;
pub mod secrets;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod upstream;
