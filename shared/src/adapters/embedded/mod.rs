//! The embedded backend: a redb file (or memory) as the table, an in-process queue.

pub mod queue;
pub mod store;

pub use queue::MemoryQueue;
pub use store::{Durability, EmbeddedStore};
