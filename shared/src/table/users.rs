//! Users, and what finds one: a username, an OIDC subject, the count of
//! admins that keeps the last one from going.
//!
//! | item      | pk                    | sk      | indexes |
//! |-----------|-----------------------|---------|---------|
//! | user      | `USER#<id>`           | `USER`  | gsi2 `USERS` / id |
//! | username  | `UNAME#<lowercase>`   | `UNAME` | none; `user_id` |
//! | subject   | `OIDC#<sha256 hex>`   | `OIDC`  | none; `user_id` (the hash of `<iss> <sub>`) |
//! | admins    | `USTATS`              | `ADMINS`| none; `admins`, the number of admin users |
//!
//! A user, its username or subject and the admin count are written in one
//! transaction. Adding an admin adds to the count; removing one is a
//! compare-and-set on it, refused by the caller at 1.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::{child_of, children, count, counters, find};
use crate::domain::identity::{Role, User};
use crate::keys::sha256_hex;
use crate::ports::{Condition, Item, Key, Store, StoreError, WriteOp};

const ALL: &str = "USERS";

/// The key of a user's item.
pub fn key(id: Uuid) -> Key {
    Key::new(format!("USER#{id}"), "USER")
}

fn username_key(name: &str) -> Key {
    Key::new(format!("UNAME#{}", name.to_lowercase()), "UNAME")
}

fn subject_key(subject: &str) -> Key {
    Key::new(format!("OIDC#{}", sha256_hex(subject)), "OIDC")
}

fn admins_key() -> Key {
    Key::new("USTATS", "ADMINS")
}

fn item(u: &User) -> Item {
    let mut item = Item::new(key(u.id), super::attrs_of(u));
    item.indexes.push(child_of(ALL, u.id.to_string()));
    item
}

fn pointer(key: Key, user: Uuid, cond: Condition) -> WriteOp {
    let mut attrs = Map::new();
    attrs.insert("user_id".into(), Value::from(user.to_string()));
    WriteOp::Put {
        item: Item::new(key, attrs),
        cond,
    }
}

fn admins_added(delta: i64) -> WriteOp {
    WriteOp::Add {
        key: admins_key(),
        deltas: vec![("admins".into(), delta)],
    }
}

/// The write that takes one admin away, only while there are `admins`.
fn admin_removed(admins: i64) -> WriteOp {
    let mut attrs = Map::new();
    attrs.insert("admins".into(), Value::from(admins - 1));
    WriteOp::Put {
        item: Item::new(admins_key(), attrs),
        cond: Condition::Equals {
            attr: "admins".into(),
            value: admins.into(),
        },
    }
}

/// The writes of a new user: `Conflict` when its username or subject is
/// taken (operation 1).
pub fn create(u: &User, now: i64) -> Vec<WriteOp> {
    let absent = Condition::Absent { now };
    let mut ops = vec![WriteOp::Put {
        item: item(u),
        cond: absent.clone(),
    }];
    let unique = match &u.subject {
        Some(subject) => subject_key(subject),
        None => username_key(&u.username),
    };
    ops.push(pointer(unique, u.id, absent));
    if u.role == Role::Admin {
        ops.push(admins_added(1));
    }
    ops
}

/// The writes that replace `prev` by `next` (compare-and-set on the
/// version); `admins` is the current admin count, needed when `next` stops
/// being one.
pub fn replace(prev: &User, next: &User, admins: i64) -> Vec<WriteOp> {
    let mut ops = vec![WriteOp::Put {
        item: item(next),
        cond: Condition::version(prev.version),
    }];
    match (prev.role == Role::Admin, next.role == Role::Admin) {
        (true, false) => ops.push(admin_removed(admins)),
        (false, true) => ops.push(admins_added(1)),
        _ => {}
    }
    ops
}

/// The writes that delete `u` (if still at its version); `admins` as in
/// [`replace`].
pub fn delete(u: &User, admins: i64) -> Vec<WriteOp> {
    let unique = match &u.subject {
        Some(subject) => subject_key(subject),
        None => username_key(&u.username),
    };
    let mut ops = vec![
        WriteOp::Delete {
            key: key(u.id),
            cond: Condition::version(u.version),
        },
        WriteOp::Delete {
            key: unique,
            cond: Condition::None,
        },
    ];
    if u.role == Role::Admin {
        ops.push(admin_removed(admins));
    }
    ops
}

/// The user with this id.
pub async fn get(store: &dyn Store, id: Uuid, now: i64) -> Result<Option<User>, StoreError> {
    find(store, &key(id), now).await
}

async fn pointed(store: &dyn Store, key: &Key, now: i64) -> Result<Option<User>, StoreError> {
    let Some(item) = store.get(key).await? else {
        return Ok(None);
    };
    let id = item.attrs.get("user_id").and_then(Value::as_str);
    match id.and_then(|s| s.parse().ok()) {
        Some(id) => get(store, id, now).await,
        None => Ok(None),
    }
}

/// The user who signs in as `name` (any case).
pub async fn by_username(
    store: &dyn Store,
    name: &str,
    now: i64,
) -> Result<Option<User>, StoreError> {
    pointed(store, &username_key(name), now).await
}

/// The user made from the JWT subject `subject` (`<iss> <sub>`).
pub async fn by_subject(
    store: &dyn Store,
    subject: &str,
    now: i64,
) -> Result<Option<User>, StoreError> {
    pointed(store, &subject_key(subject), now).await
}

/// How many admins there are.
pub async fn admin_count(store: &dyn Store) -> Result<i64, StoreError> {
    Ok(count(&counters(store, &admins_key()).await?, "admins"))
}

/// A page of users, newest first, and the next cursor.
pub async fn list(
    store: &dyn Store,
    limit: usize,
    before: Option<String>,
    now: i64,
) -> Result<(Vec<User>, Option<String>), StoreError> {
    children(store, ALL, limit, before, now).await
}
