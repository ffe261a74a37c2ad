//! Login sessions: `SESSION#<sha256 hex of the token>`/`SESSION`, with a
//! TTL and an expiry entry at their end. The token itself is never stored.

use chrono::{DateTime, Utc};

use super::find;
use super::timers::expiring;
use crate::domain::identity::Session;
use crate::ports::{Condition, Item, Key, Store, StoreError, WriteOp};

fn key(sha256_hex: &str) -> Key {
    Key::new(format!("SESSION#{sha256_hex}"), "SESSION")
}

/// The write of a new session under its token's hash.
pub fn create(sha256_hex: &str, s: &Session, now: DateTime<Utc>) -> WriteOp {
    let item = Item::new(key(sha256_hex), super::attrs_of(s));
    WriteOp::Put {
        item: expiring(item, s.expires_at),
        cond: Condition::Absent {
            now: now.timestamp(),
        },
    }
}

/// The write that ends a session (nothing if it is already gone).
pub fn delete(sha256_hex: &str) -> WriteOp {
    WriteOp::Delete {
        key: key(sha256_hex),
        cond: Condition::None,
    }
}

/// The live session whose token hashes to `sha256_hex`.
pub async fn get(
    store: &dyn Store,
    sha256_hex: &str,
    now: i64,
) -> Result<Option<Session>, StoreError> {
    find(store, &key(sha256_hex), now).await
}
