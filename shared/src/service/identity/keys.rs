//! Users' API keys: `wk_` and 32 random bytes, shown once when made and
//! stored only as their SHA-256; a key acts for its user with at most its
//! own role.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::super::{Deps, ServiceError};
use super::KEY_PREFIX;
use crate::domain::identity::{Credential, Principal, Role, UserKey};
use crate::keys::{hint, new_token, sha256_hex};
use crate::table::{api_keys, users};

/// Keys one user may hold.
pub const MAX_KEYS_PER_USER: usize = 100;
/// The longest key name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// A key's `last_used_at` is written at most this often.
const TOUCH_EVERY: chrono::Duration = chrono::Duration::seconds(60);

/// A key to make, as `POST /api/v1/keys` takes it.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// 1 to 100 printable characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$"
    )]
    pub name: String,
    /// At most the caller's role; the caller's role by default.
    #[serde(default)]
    pub role: Option<Role>,
    /// When it stops working (ISO 8601), or in how many seconds.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub expires_in_seconds: Option<u64>,
}

/// Make a key for `principal`'s user: the key (shown once) and its record.
pub async fn create(
    deps: &Deps,
    principal: &Principal,
    new: NewKey,
) -> Result<(String, UserKey), ServiceError> {
    let user = super::user_of(principal)?;
    let name = new.name.trim().to_string();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(ServiceError::invalid(
            "invalid_field",
            format!("name must be 1-{MAX_NAME_CHARS} printable characters"),
        ));
    }
    let role = new.role.unwrap_or(principal.role);
    if role > principal.role {
        return Err(ServiceError::Forbidden(format!(
            "a key's role may not exceed yours ({})",
            principal.role.as_str()
        )));
    }
    let now = deps.now();
    let expires_at = match (new.expires_at, new.expires_in_seconds) {
        (Some(_), Some(_)) => {
            return Err(ServiceError::invalid(
                "invalid_field",
                "give expires_at or expires_in_seconds, not both",
            ));
        }
        (Some(at), None) => Some(at),
        (None, Some(s)) => Some(now + chrono::Duration::seconds(s.min(10 * 365 * 86_400) as i64)),
        (None, None) => None,
    };
    if expires_at.is_some_and(|at| at <= now) {
        return Err(ServiceError::invalid(
            "invalid_field",
            "expires_at must be in the future",
        ));
    }
    let held = api_keys::of_user(&*deps.store, user, MAX_KEYS_PER_USER, now.timestamp()).await?;
    if held.len() >= MAX_KEYS_PER_USER {
        return Err(ServiceError::Conflict {
            message: format!("a user holds at most {MAX_KEYS_PER_USER} keys: delete one first"),
            code: "too_many_keys",
        });
    }
    let token = new_token(KEY_PREFIX);
    let key = UserKey {
        id: Uuid::now_v7(),
        user_id: user,
        name,
        role,
        hint: hint(&token),
        sha256: sha256_hex(&token),
        created_at: now,
        expires_at,
        last_used_at: None,
    };
    deps.store.transact(api_keys::create(&key, now)).await?;
    Ok((token, key))
}

/// `principal`'s user's keys, oldest first.
pub async fn list(deps: &Deps, principal: &Principal) -> Result<Vec<UserKey>, ServiceError> {
    let user = super::user_of(principal)?;
    let now = deps.now().timestamp();
    Ok(api_keys::of_user(&*deps.store, user, MAX_KEYS_PER_USER, now).await?)
}

/// Delete key `id`: its user's own, or any for an admin; 404 otherwise.
pub async fn delete(deps: &Deps, principal: &Principal, id: Uuid) -> Result<(), ServiceError> {
    let now = deps.now().timestamp();
    let key = api_keys::by_id(&*deps.store, id, now)
        .await?
        .filter(|k| principal.is_admin() || Some(k.user_id) == principal.user_id)
        .ok_or(ServiceError::NotFound("no such key"))?;
    deps.store.transact(api_keys::delete(&key)).await?;
    deps.identity.forget_user(key.user_id);
    Ok(())
}

/// The principal of the live key that hashes to `sha256`, with its user's
/// current role and permissions, and when the key expires; records the use
/// (at most once a minute).
pub(super) async fn principal(
    deps: &Deps,
    sha256: &str,
) -> Result<Option<(Principal, Option<DateTime<Utc>>)>, ServiceError> {
    let now = deps.now();
    let Some(key) = api_keys::by_hash(&*deps.store, sha256, now.timestamp()).await? else {
        return Ok(None);
    };
    if key.expires_at.is_some_and(|at| at <= now) {
        return Ok(None);
    }
    let Some(user) = users::get(&*deps.store, key.user_id, now.timestamp()).await? else {
        return Ok(None);
    };
    if key.last_used_at.is_none_or(|at| now - at >= TOUCH_EVERY) {
        let used = UserKey {
            last_used_at: Some(now),
            ..key.clone()
        };
        // Off the request's path: a lost write only makes the date older.
        let store = deps.store.clone();
        tokio::spawn(async move {
            let _ = store.transact(vec![api_keys::touch(&used)]).await;
        });
    }
    let principal = Principal::of_user(&user, Credential::ApiKey(key.id), key.role);
    Ok(Some((principal, key.expires_at)))
}
