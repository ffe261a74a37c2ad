//! Users: made by an admin (or as the first admin), changed by an admin or,
//! for the password, by themselves; made from a JWT on first sight.

use chrono::Utc;
use serde::Deserialize;
use uuid::Uuid;

use super::super::{Deps, ServiceError, found};
use crate::domain::identity::{Permissions, Role, User, password_problem, username_problem};
use crate::keys::password;
use crate::ports::StoreError;
use crate::table::{api_keys, secrets, users};

/// Attempts of a compare-and-set that lost to a concurrent change.
const CAS_ATTEMPTS: usize = 5;
/// The most users one list page holds.
pub const MAX_PAGE: usize = 1000;

/// A user to make, as `POST /admin/users` takes it.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    #[schema(pattern = "^[A-Za-z0-9._@+-]{1,64}$")]
    pub username: String,
    /// At least 8 characters, at most 1024 bytes.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
    #[serde(default = "default_role")]
    pub role: Role,
    #[serde(default)]
    pub permissions: Permissions,
    #[serde(default)]
    pub runs_limit: Option<u64>,
}

fn default_role() -> Role {
    Role::User
}

fn invalid(message: String) -> ServiceError {
    ServiceError::invalid("invalid_field", message)
}

/// Argon2id hashes that may run at once. Each takes 19 MiB and tens of
/// milliseconds of CPU, so a flood of logins from many addresses (each
/// under its own rate limit) queues here instead of exhausting memory.
const CONCURRENT_HASHES: usize = 4;
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(CONCURRENT_HASHES);

/// Run one Argon2id computation on the blocking pool under [`HASHING`]. The
/// permit moves into the closure so it is held until the hash finishes even
/// when the caller's future is dropped.
async fn hashing<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ServiceError> {
    let permit = HASHING
        .acquire()
        .await
        .map_err(|e| ServiceError::Crashed(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await
    .map_err(|e| ServiceError::Crashed(e.to_string()))
}

/// Hash a new password.
pub(crate) async fn hash_password(plain: String) -> Result<String, ServiceError> {
    hashing(move || password::hash(&plain))
        .await?
        .map_err(ServiceError::Crashed)
}

/// Whether `plain` matches `phc` (the decoy when the user is unknown).
pub(crate) async fn password_matches(plain: String, phc: Option<String>) -> bool {
    hashing(move || {
        let phc = phc.as_deref().unwrap_or_else(|| password::decoy());
        password::verify(&plain, phc)
    })
    .await
    .unwrap_or(false)
}

/// Make a user with a password: 409 `username_taken` when the name (in any
/// case) is someone's.
pub async fn create(deps: &Deps, new: NewUser) -> Result<User, ServiceError> {
    if let Some(problem) = username_problem(&new.username) {
        return Err(invalid(problem));
    }
    if let Some(problem) = password_problem(&new.password) {
        return Err(invalid(problem));
    }
    if let Some(problem) = new.permissions.problem() {
        return Err(invalid(problem));
    }
    let now = deps.now();
    let user = User {
        id: Uuid::now_v7(),
        username: new.username,
        role: new.role,
        permissions: new.permissions,
        password_hash: Some(hash_password(new.password).await?),
        subject: None,
        runs_limit: new.runs_limit,
        credentials_epoch: 0,
        created_at: now,
        updated_at: now,
        version: 1,
    };
    match deps
        .store
        .transact(users::create(&user, now.timestamp()))
        .await
    {
        Err(StoreError::Conflict { .. }) => Err(ServiceError::Conflict {
            message: format!("the username `{}` is taken", user.username),
            code: "username_taken",
        }),
        other => other.map(|()| user).map_err(Into::into),
    }
}

/// When no user exists yet, make `admin` with `password` (random when
/// `None`): the username and password made, `None` when users exist.
pub async fn ensure_first_admin(
    deps: &Deps,
    password: Option<String>,
) -> Result<Option<(String, String)>, ServiceError> {
    let now = deps.now().timestamp();
    if !users::list(&*deps.store, 1, None, now).await?.0.is_empty() {
        return Ok(None);
    }
    let password = password.unwrap_or_else(password::random_password);
    let new = NewUser {
        username: "admin".into(),
        password: password.clone(),
        role: Role::Admin,
        permissions: Permissions::default(),
        runs_limit: None,
    };
    match create(deps, new).await {
        Ok(user) => Ok(Some((user.username, password))),
        // Another process made it first.
        Err(ServiceError::Conflict { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The user with this id.
pub async fn get(deps: &Deps, id: Uuid) -> Result<User, ServiceError> {
    let now = deps.now().timestamp();
    found(users::get(&*deps.store, id, now).await?, "no such user")
}

/// A page of users, newest first, and the next cursor.
pub async fn list(
    deps: &Deps,
    limit: usize,
    before: Option<String>,
) -> Result<(Vec<User>, Option<String>), ServiceError> {
    let now = deps.now().timestamp();
    Ok(users::list(&*deps.store, limit.clamp(1, MAX_PAGE), before, now).await?)
}

/// Apply `change` to user `id` by compare-and-set, retrying a lost race;
/// 409 `last_admin` when it would leave no admin.
async fn change(
    deps: &Deps,
    id: Uuid,
    change: impl Fn(&mut User) -> Result<(), ServiceError>,
) -> Result<User, ServiceError> {
    for _ in 0..CAS_ATTEMPTS {
        let prev = get(deps, id).await?;
        let mut next = prev.clone();
        change(&mut next)?;
        next.version = prev.version + 1;
        next.updated_at = deps.now();
        let admins = users::admin_count(&*deps.store).await?;
        if prev.role == Role::Admin && next.role != Role::Admin {
            refuse_last_admin(admins)?;
        }
        match deps
            .store
            .transact(users::replace(&prev, &next, admins))
            .await
        {
            Ok(()) => {
                deps.identity.forget_user(id);
                return Ok(next);
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ServiceError::Conflict {
        message: "the user changed concurrently; retry".into(),
        code: "conflict",
    })
}

fn refuse_last_admin(admins: i64) -> Result<(), ServiceError> {
    match admins > 1 {
        true => Ok(()),
        false => Err(ServiceError::Conflict {
            message: "this is the last admin: make another admin first".into(),
            code: "last_admin",
        }),
    }
}

/// Give user `id` the role `role`.
pub async fn set_role(deps: &Deps, id: Uuid, role: Role) -> Result<User, ServiceError> {
    change(deps, id, |u| {
        u.role = role;
        Ok(())
    })
    .await
}

/// Replace user `id`'s per-queue permissions.
pub async fn set_permissions(
    deps: &Deps,
    id: Uuid,
    permissions: Permissions,
) -> Result<User, ServiceError> {
    if let Some(problem) = permissions.problem() {
        return Err(invalid(problem));
    }
    change(deps, id, |u| {
        u.permissions = permissions.clone();
        Ok(())
    })
    .await
}

/// Set user `id`'s runs per month (`None`: no limit).
pub async fn set_runs_limit(
    deps: &Deps,
    id: Uuid,
    runs_limit: Option<u64>,
) -> Result<User, ServiceError> {
    change(deps, id, |u| {
        u.runs_limit = runs_limit;
        Ok(())
    })
    .await
}

/// Change user `id`'s password, given its current one: 403 `forbidden`
/// when that is wrong. Every session made before ends.
pub async fn change_password(
    deps: &Deps,
    id: Uuid,
    current: String,
    new: String,
) -> Result<User, ServiceError> {
    if let Some(problem) = password_problem(&new) {
        return Err(invalid(problem));
    }
    let user = get(deps, id).await?;
    if user.password_hash.is_none() {
        return Err(ServiceError::invalid(
            "no_password",
            "this user signs in through its identity provider",
        ));
    }
    if !password_matches(current, user.password_hash.clone()).await {
        return Err(ServiceError::Forbidden(
            "current_password is not the user's password".into(),
        ));
    }
    let hash = hash_password(new).await?;
    change(deps, id, |u| {
        u.password_hash = Some(hash.clone());
        u.credentials_epoch += 1;
        Ok(())
    })
    .await
}

/// Delete user `id` with its API keys and stored secrets; 409 `last_admin`
/// for the last admin. Its sessions end with it.
pub async fn delete(deps: &Deps, id: Uuid) -> Result<(), ServiceError> {
    for _ in 0..CAS_ATTEMPTS {
        let user = get(deps, id).await?;
        let admins = users::admin_count(&*deps.store).await?;
        if user.role == Role::Admin {
            refuse_last_admin(admins)?;
        }
        match deps.store.transact(users::delete(&user, admins)).await {
            Ok(()) => {
                deps.identity.forget_user(id);
                remove_belongings(deps, id).await?;
                return Ok(());
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ServiceError::Conflict {
        message: "the user changed concurrently; retry".into(),
        code: "conflict",
    })
}

/// A deleted user's keys and secrets (no use without the user, but not
/// to be left lying around).
async fn remove_belongings(deps: &Deps, id: Uuid) -> Result<(), ServiceError> {
    let now = deps.now().timestamp();
    let limit = super::keys::MAX_KEYS_PER_USER;
    for key in api_keys::of_user(&*deps.store, id, limit, now).await? {
        deps.store.transact(api_keys::delete(&key)).await?;
    }
    for secret in secrets::of_owner(&*deps.store, Some(id), super::secrets::MAX_SECRETS).await? {
        deps.store
            .transact(vec![secrets::delete(Some(id), &secret.name)])
            .await
            .or_else(|e| if e.is_conflict() { Ok(()) } else { Err(e) })?;
    }
    Ok(())
}

/// The user an OIDC issuer's `sub` names, made with `username` and `role`
/// on first sight.
pub async fn of_subject(
    deps: &Deps,
    issuer: &str,
    sub: &str,
    username: &str,
    role: Role,
) -> Result<User, ServiceError> {
    let subject = format!("{issuer} {sub}");
    let now = deps.now();
    if let Some(user) = users::by_subject(&*deps.store, &subject, now.timestamp()).await? {
        return Ok(user);
    }
    let username: String = username
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._@+-".contains(*c))
        .take(crate::domain::identity::MAX_USERNAME_CHARS)
        .collect();
    let user = User {
        id: Uuid::now_v7(),
        username: if username.is_empty() {
            "oidc-user".into()
        } else {
            username
        },
        role,
        permissions: Permissions::default(),
        password_hash: None,
        subject: Some(subject.clone()),
        runs_limit: None,
        credentials_epoch: 0,
        created_at: now,
        updated_at: now,
        version: 1,
    };
    match deps
        .store
        .transact(users::create(&user, now.timestamp()))
        .await
    {
        Ok(()) => Ok(user),
        // Made concurrently by another request with the same token.
        Err(StoreError::Conflict { .. }) => found(
            users::by_subject(&*deps.store, &subject, Utc::now().timestamp()).await?,
            "no such user",
        ),
        Err(e) => Err(e.into()),
    }
}
