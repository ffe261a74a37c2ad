//! Identity and access: who a request acts for (a login session, a user's
//! API key, a JWT, the bootstrap key, or the deployment itself on an open
//! API), the users and their credentials, stored secrets, and the limits
//! that keep one caller from crowding out the others.
//!
//! What a request presents is looked up once per [`CACHE_TTL`] per process:
//! an API key or a JWT's user costs one or two reads per cache miss, none
//! on a hit. Sessions are read every time (two reads), so a logout or a
//! password change ends them at once in every process.

pub mod keys;
pub mod limits;
pub mod secrets;
pub mod sessions;
pub mod users;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{Deps, ServiceError};
use crate::config::JwtConfig;
use crate::domain::identity::{Credential, Principal, Role};
use crate::jwt::{JwtError, JwtVerifier, looks_like_jwt};
use crate::keys::sha256_hex;

/// How long a looked-up API key or JWT user is trusted before it is read
/// again: a deleted key or a changed role takes effect in other processes
/// within this time (at once in the process that made the change).
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// Principals one process remembers; past this the cache starts over.
const CACHE_ENTRIES: usize = 10_000;
/// Prefix of users' API keys.
pub const KEY_PREFIX: &str = "wk_";
/// Prefix of session tokens (the cookie's value).
pub const SESSION_PREFIX: &str = "ws_";

/// What a request presented to say who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Presented {
    Nothing,
    /// `X-API-Key`.
    Key(String),
    /// `Authorization: Bearer`: an API key or a JWT.
    Bearer(String),
    /// The session cookie.
    Session(String),
}

/// Why a request is not let in (401); `detail` says which case.
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("invalid token: {0}")]
    Token(JwtError),
    #[error(transparent)]
    Failed(#[from] ServiceError),
}

impl From<crate::ports::StoreError> for Denied {
    fn from(e: crate::ports::StoreError) -> Self {
        Denied::Failed(e.into())
    }
}

/// Per-process state of identity and access: caches and counters. What it
/// does is decided by `Deps::config` at each call, so a test that changes
/// the config gets what it asked for.
#[derive(Default)]
pub struct Identity {
    principals: Mutex<HashMap<String, (Principal, Instant)>>,
    jwt: OnceLock<JwtVerifier>,
    pub(crate) requests: limits::MemoryWindow,
    pub(crate) secrets_key: tokio::sync::OnceCell<Option<crate::keys::sealing::MasterKey>>,
}

impl Identity {
    fn cached(&self, hash: &str) -> Option<Principal> {
        let entries = self.principals.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(hash)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(p, _)| p.clone())
    }

    fn remember(&self, hash: String, principal: &Principal, ttl: Duration) {
        let mut entries = self.principals.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CACHE_ENTRIES {
            let now = Instant::now();
            entries.retain(|_, (_, until)| now < *until);
            if entries.len() >= CACHE_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(hash, (principal.clone(), Instant::now() + ttl));
    }

    /// Drop what this process remembers of `user` (after a change to it or
    /// its keys).
    pub fn forget_user(&self, user: Uuid) {
        let mut entries = self.principals.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (p, _)| p.user_id != Some(user));
    }

    fn verifier(&self, jwt: &JwtConfig) -> &JwtVerifier {
        self.jwt
            .get_or_init(|| JwtVerifier::new(jwt.settings.clone()))
    }
}

/// Who `presented` is. Nothing presented is the deployment on an open API,
/// else 401; anything presented must be valid, open or not.
pub async fn authenticate(deps: &Deps, presented: &Presented) -> Result<Principal, Denied> {
    let config = &deps.config;
    match presented {
        Presented::Nothing if config.open && !config.api_key.is_enabled() => {
            Ok(Principal::deployment(Credential::Open))
        }
        Presented::Nothing => Err(Denied::Unauthenticated(
            "missing credentials: send an API key in the X-API-Key header, a Bearer token, or sign in",
        )),
        Presented::Session(token) => sessions::principal(deps, token).await,
        Presented::Key(key) => by_key(deps, key.trim()).await,
        Presented::Bearer(token) => {
            let token = token.trim();
            if token.starts_with(KEY_PREFIX) || config.api_key.accepts_configured(token) {
                return by_key(deps, token).await;
            }
            match &config.jwt {
                Some(jwt) if looks_like_jwt(token) => by_jwt(deps, jwt, token).await,
                _ => by_key(deps, token).await,
            }
        }
    }
}

/// The bootstrap key's deployment, or the user of a `wk_` key.
async fn by_key(deps: &Deps, key: &str) -> Result<Principal, Denied> {
    if deps.config.api_key.accepts_configured(key) {
        return Ok(Principal::deployment(Credential::BootstrapKey));
    }
    if !crate::keys::is_token_shaped(KEY_PREFIX, key) {
        return Err(Denied::Unauthenticated("invalid API key"));
    }
    let hash = sha256_hex(key);
    if let Some(p) = deps.identity.cached(&hash) {
        return Ok(p);
    }
    match keys::principal(deps, &hash).await? {
        Some((p, expires)) => {
            // Trusted until the cache's end or the key's, whichever is first.
            deps.identity
                .remember(hash, &p, until(deps, expires.map(|at| at.timestamp())));
            Ok(p)
        }
        None => Err(Denied::Unauthenticated("invalid API key")),
    }
}

/// The user a valid JWT names (made on first sight), with the role its
/// claims give.
async fn by_jwt(deps: &Deps, jwt: &JwtConfig, token: &str) -> Result<Principal, Denied> {
    let hash = sha256_hex(token);
    if let Some(p) = deps.identity.cached(&hash) {
        return Ok(p);
    }
    let claims = deps
        .identity
        .verifier(jwt)
        .verify(token)
        .await
        .map_err(Denied::Token)?;
    let role = jwt.role_claim.as_deref().and_then(|claim| {
        claims
            .texts(claim)
            .into_iter()
            .find_map(|r| r.parse::<Role>().ok())
    });
    let name = ["preferred_username", "email", "username"]
        .iter()
        .find_map(|c| claims.text(c))
        .unwrap_or(&claims.sub);
    let user = users::of_subject(
        deps,
        &claims.iss,
        &claims.sub,
        name,
        role.unwrap_or(jwt.default_role),
    )
    .await?;
    let mut principal = Principal::of_user(&user, Credential::Jwt, Role::Admin);
    if let Some(role) = role {
        // The issuer's word on the role wins over what was stored at first sight.
        principal.role = role;
    }
    // Trusted until the cache's end or the token's, whichever is first.
    let exp = claims.all.get("exp").and_then(serde_json::Value::as_i64);
    deps.identity.remember(hash, &principal, until(deps, exp));
    Ok(principal)
}

/// How long to trust a credential that ends at `end` (epoch seconds): at
/// most [`CACHE_TTL`].
fn until(deps: &Deps, end: Option<i64>) -> Duration {
    end.map_or(CACHE_TTL, |end| {
        Duration::from_secs((end - deps.now().timestamp()).max(0) as u64).min(CACHE_TTL)
    })
}

/// The user behind `principal`: 400 `no_user` for the deployment itself
/// (the bootstrap key or an open loopback gateway), which has no account,
/// keys or secrets of its own.
pub fn user_of(principal: &Principal) -> Result<Uuid, ServiceError> {
    principal.user_id.ok_or_else(|| {
        ServiceError::invalid(
            "no_user",
            "this belongs to a user: sign in as one, or use one of its API keys",
        )
    })
}

/// `NotFound(missing)` unless `who` may read a record `owner` owns: another
/// user's records are not even said to exist.
pub fn check_sees(
    who: &Principal,
    owner: Option<Uuid>,
    missing: &'static str,
) -> Result<(), ServiceError> {
    match who.sees(owner) {
        true => Ok(()),
        false => Err(ServiceError::NotFound(missing)),
    }
}

/// As [`check_sees`], and `Forbidden` when `who` may read but not change it.
pub fn check_owns(
    who: &Principal,
    owner: Option<Uuid>,
    missing: &'static str,
) -> Result<(), ServiceError> {
    check_sees(who, owner, missing)?;
    match who.owns(owner) {
        true => Ok(()),
        false => Err(ServiceError::Forbidden(
            "only its owner or an admin may change this".into(),
        )),
    }
}
