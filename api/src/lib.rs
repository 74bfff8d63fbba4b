//! The wire types of kubeportal's HTTP API: the JSON bodies its routes read
//! and answer, as plain data with `serde`, shared by the server and its
//! clients so the two cannot drift apart.
//!
//! The modules follow the server's: [`clusters`] (the registry), [`objects`]
//! (entity-scoped object queries), [`permissions`] and [`kubernetes`] (the
//! policy's explain route), [`audit`], [`tickets`] (browser WebSockets) and
//! [`error`] (Backstage's error envelope and the proxy's `Status`).
//!
//! With the `openapi` feature every type also derives `utoipa::ToSchema`,
//! carrying the descriptions and examples of kubeportal's OpenAPI document.

#![forbid(unsafe_code)]

pub mod audit;
pub mod clusters;
pub mod error;
pub mod kubernetes;
pub mod objects;
pub mod permissions;
pub mod tickets;
