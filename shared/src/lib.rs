//! warren's core: the domain, its ports, the adapters that plug a backend in,
//! and the use cases every function and runtime calls.

pub mod adapters;
pub mod config;
pub mod domain;
pub mod handlers;
pub mod http;
pub mod json;
pub mod jwt;
pub mod keys;
pub mod messages;
pub mod ports;
pub mod runtime;
pub mod service;
pub mod table;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod trace;

pub use config::Config;
pub use service::{Deps, ServiceError};
