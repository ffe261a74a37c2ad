//! Backends behind the ports: the embedded store and in-process queue for one
//! process on a laptop, the system clock, guarded outgoing HTTP.

pub mod clock;
pub mod embedded;
pub mod http;
