//! kubeportal: the Kubernetes backend of a developer portal.
//!
//! Request flow: `identity/` (who) → `permissions/` (may they) → `clusters/`
//! (which cluster, through its [`ClusterStore`](clusters::ClusterStore)) → the
//! proxy and object queries. Errors become HTTP only in `error.rs`.
//!
//! The modules stand in layers and import only from the layers below their
//! own (`layers_test.rs` holds the table, and fails on an import that runs
//! up): the foundation (`error`, `kubernetes`, `secrets`); the request context
//! (`context`, `extract`); `identity` and `telemetry`; `permissions`; the
//! domains that own their store contracts (`clusters`, `audit`); the stores
//! and the cluster connections (`store`, `upstream`); the tenant views
//! (`views`: lists and watches filtered object by object); the features
//! (`objects`, `proxy`); and on top the composition root (`config`, `state`, `health`,
//! `openapi`, `app`), which wires the concrete stores in. Each module owns its
//! configuration section and its checks; `config.rs` composes the sections,
//! and handlers take what they use from the state through `FromRef`.

pub mod app;
pub mod audit;
pub mod certificates;
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
pub mod views;

#[cfg(test)]
mod layers_test;
