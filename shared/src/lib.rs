//! warren's core: the domain, its ports, the adapters that plug a backend in,
//! and the use cases every function and runtime calls.

pub mod adapters;
pub mod domain;
pub mod handlers;
pub mod http;
pub mod json;
pub mod ports;
pub mod service;
pub mod testing;

pub use service::{Config, Deps, ServiceError};
