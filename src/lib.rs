//! keywarden: a Kubernetes operator that issues and governs API access keys.
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod controller;
pub mod keys;
mod sync;
pub mod verifier;
