//! `devcluster`: an embedded, in-memory Kubernetes API server for tests and local development.
//!
//! It serves the Kubernetes HTTP API from one process so that operators can be tested against
//! real clients (kube-rs, kubectl, helm) without a real cluster. It is never part of a
//! production install: no kubelet, no pods running.
#![forbid(unsafe_code)]

pub mod admission;
pub mod apiservices;
pub mod apply;
pub mod auth;
pub mod bench;
pub mod builtin;
mod cluster;
pub mod crds;
pub mod discovery;
pub mod events;
pub mod faults;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod schema;
pub mod selector;
pub(crate) mod server;
pub mod status;
pub mod store;
pub mod table;
pub mod tls;

pub use cluster::{DevCluster, Error, Options};
pub use faults::{Faults, RequestMatch};
pub use server::counts::RequestCount;
