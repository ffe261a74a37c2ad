//! Login sessions: a password login makes one (its random token goes to
//! the browser as a cookie; only its SHA-256 is stored), a logout or a
//! password change ends it. Failed logins slow the next ones down, per
//! username and per client address, counted in the table so the limit
//! holds across processes.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use super::super::{Deps, ServiceError};
use super::{Denied, SESSION_PREFIX};
use crate::domain::identity::{Credential, Principal, Role, Session, User};
use crate::keys::{is_token_shaped, new_token, sha256_hex};
use crate::ports::StoreError;
use crate::table::{limits, sessions, users};

/// Failures of one username forgiven before logins of it are slowed down.
pub const FREE_FAILURES_PER_USER: u64 = 5;
/// Failures from one address forgiven before its logins are slowed down
/// (an office may share one).
pub const FREE_FAILURES_PER_ADDRESS: u64 = 20;
/// The longest wait between two tries.
pub const MAX_LOCKOUT_SECONDS: i64 = 900;

/// Why a login did not make a session.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown user or wrong password (the same answer for both).
    #[error("invalid credentials")]
    Invalid,
    /// Too many failures lately: try again in this many seconds.
    #[error("too many failed logins; retry in {0} s")]
    Slowed(u64),
    #[error(transparent)]
    Failed(#[from] ServiceError),
}

impl From<StoreError> for LoginError {
    fn from(e: StoreError) -> Self {
        LoginError::Failed(e.into())
    }
}

/// Seconds to wait after `failures` failures (the last at `last_at`), of
/// which `free` are forgiven: 2, 4, 8, ... up to [`MAX_LOCKOUT_SECONDS`].
pub fn wait_after(failures: u64, free: u64, last_at: i64, now: i64) -> u64 {
    if failures < free {
        return 0;
    }
    let lockout = 2i64
        .saturating_pow((failures - free + 1).min(20) as u32)
        .min(MAX_LOCKOUT_SECONDS);
    (last_at + lockout - now).max(0) as u64
}

fn scopes(username: &str, client: Option<IpAddr>) -> Vec<(String, u64)> {
    let mut scopes = vec![(
        format!("user:{}", username.to_lowercase()),
        FREE_FAILURES_PER_USER,
    )];
    if let Some(ip) = client {
        scopes.push((format!("ip:{ip}"), FREE_FAILURES_PER_ADDRESS));
    }
    scopes
}

/// Sign in with a password: the new session's token and its user.
pub async fn login(
    deps: &Deps,
    username: &str,
    password: &str,
    client: Option<IpAddr>,
) -> Result<(String, User), LoginError> {
    let now = deps.now();
    let store = &*deps.store;
    let scopes = scopes(username, client);
    let mut wait = 0;
    for (scope, free) in &scopes {
        let f = limits::failures(store, scope, now.timestamp()).await?;
        wait = wait.max(wait_after(f.count, *free, f.last_at, now.timestamp()));
    }
    if wait > 0 {
        // Refused before the password is looked at: a guess while slowed
        // down says nothing.
        return Err(LoginError::Slowed(wait));
    }
    let user = match username_problem_free(username) {
        true => users::by_username(store, username, now.timestamp()).await?,
        false => None,
    };
    let hash = user.as_ref().and_then(|u| u.password_hash.clone());
    let matches = super::users::password_matches(password.to_string(), hash).await;
    let Some(user) = user.filter(|_| matches) else {
        for (scope, _) in &scopes {
            record_failure(deps, scope, now).await?;
        }
        return Err(LoginError::Invalid);
    };
    deps.store
        .transact(vec![limits::forget(&scopes[0].0)])
        .await?;
    let token = start(deps, &user, now).await?;
    Ok((token, user))
}

fn username_problem_free(username: &str) -> bool {
    crate::domain::identity::username_problem(username).is_none()
}

/// Add a failure to `scope`, retrying a lost compare-and-set.
async fn record_failure(deps: &Deps, scope: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
    for _ in 0..5 {
        let prev = limits::failures(&*deps.store, scope, now.timestamp()).await?;
        match deps
            .store
            .transact(vec![limits::failed(scope, &prev, now)])
            .await
        {
            Err(e) if e.is_conflict() => continue,
            other => return other,
        }
    }
    Ok(())
}

/// A new session of `user`: its token.
pub async fn start(deps: &Deps, user: &User, now: DateTime<Utc>) -> Result<String, ServiceError> {
    let token = new_token(SESSION_PREFIX);
    let ttl = chrono::Duration::from_std(deps.config.session_ttl)
        .unwrap_or_else(|_| chrono::Duration::hours(12));
    let session = Session {
        user_id: user.id,
        epoch: user.credentials_epoch,
        created_at: now,
        expires_at: now + ttl,
    };
    deps.store
        .transact(vec![sessions::create(&sha256_hex(&token), &session, now)])
        .await?;
    Ok(token)
}

/// End the session of `token` (nothing when there is none).
pub async fn end(deps: &Deps, token: &str) -> Result<(), ServiceError> {
    if is_token_shaped(SESSION_PREFIX, token) {
        deps.store
            .transact(vec![sessions::delete(&sha256_hex(token))])
            .await?;
    }
    Ok(())
}

/// The user of a live session whose user still has the credentials it
/// began with.
pub(super) async fn principal(deps: &Deps, token: &str) -> Result<Principal, Denied> {
    let expired = Denied::Unauthenticated("the session has ended: sign in again");
    if !is_token_shaped(SESSION_PREFIX, token) {
        return Err(expired);
    }
    by_hash(deps, &sha256_hex(token)).await
}

/// What a page hands its live socket instead of the session token (which
/// stays in an HttpOnly cookie): the token's SHA-256, which opens the
/// session's socket and nothing else.
pub const SOCKET_TICKET_PREFIX: &str = "wst_";

/// The socket ticket of session `token`.
pub fn socket_ticket(token: &str) -> String {
    format!("{SOCKET_TICKET_PREFIX}{}", sha256_hex(token))
}

/// The principal of a live socket's first message: a session token (as
/// lapinq's clients send it) or a page's socket ticket.
pub async fn socket_principal(deps: &Deps, token: &str) -> Result<Principal, Denied> {
    match token.strip_prefix(SOCKET_TICKET_PREFIX) {
        Some(hash) if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            by_hash(deps, &hash.to_ascii_lowercase()).await
        }
        Some(_) => Err(Denied::Unauthenticated("invalid socket ticket")),
        None => principal(deps, token).await,
    }
}

async fn by_hash(deps: &Deps, hash: &str) -> Result<Principal, Denied> {
    let expired = Denied::Unauthenticated("the session has ended: sign in again");
    let now = deps.now().timestamp();
    let Some(session) = sessions::get(&*deps.store, hash, now).await? else {
        return Err(expired);
    };
    match users::get(&*deps.store, session.user_id, now).await? {
        Some(user) if user.credentials_epoch == session.epoch => {
            Ok(Principal::of_user(&user, Credential::Session, Role::Admin))
        }
        _ => Err(expired),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_grows_after_the_free_failures_and_is_capped() {
        assert_eq!(wait_after(4, 5, 100, 100), 0);
        assert_eq!(wait_after(5, 5, 100, 100), 2);
        assert_eq!(wait_after(6, 5, 100, 100), 4);
        assert_eq!(wait_after(6, 5, 100, 103), 1);
        assert_eq!(wait_after(6, 5, 100, 104), 0);
        assert_eq!(wait_after(60, 5, 100, 100), MAX_LOCKOUT_SECONDS as u64);
    }
}
