//! Who calls and what they may do: users with a role and per-queue
//! permissions, and the principal a request acts as. Pure rules, no I/O.
//!
//! - `viewer` reads: tasks, queues, topics, and every user's pipelines,
//!   triggers, executions and events (an observer of the whole deployment:
//!   dashboards, on-call).
//! - `user` reads the same tasks, queues and topics, enqueues, publishes,
//!   and creates, runs and changes its own pipelines, triggers and keys;
//!   it sees only its own pipelines and what hangs off them. It cancels,
//!   deletes and requeues tasks only on the queues its permissions name.
//! - `admin` does everything, including users, bulk deletes and other
//!   users' pipelines.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::task::valid_queue_name;

/// A user's standing, lowest first: a role includes those below it.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    User,
    Admin,
}

impl Role {
    /// The role as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "viewer" => Ok(Role::Viewer),
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            _ => Err(format!(
                "role must be `admin`, `user` or `viewer`, not `{s}`"
            )),
        }
    }
}

/// What a permission lets a `user` do to the tasks of one queue.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum QueueAction {
    /// Cancel a pending task.
    Cancel,
    /// Delete tasks.
    Delete,
    /// Requeue a failed task.
    Requeue,
}

impl QueueAction {
    /// The action as permissions write it.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueAction::Cancel => "cancel",
            QueueAction::Delete => "delete",
            QueueAction::Requeue => "requeue",
        }
    }
}

/// The queue that grants an action on every queue.
pub const ANY_QUEUE: &str = "*";
/// The most queues one user's permissions may name.
pub const MAX_PERMISSION_QUEUES: usize = 200;

/// Per-queue permissions, as seed 001 writes them:
/// `{"queues": {"video": ["delete", "cancel"]}}` (`*` names every queue).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    #[serde(default)]
    pub queues: BTreeMap<String, BTreeSet<QueueAction>>,
}

impl Permissions {
    /// Whether these permissions grant `action` on `queue`.
    pub fn grants(&self, queue: &str, action: QueueAction) -> bool {
        [queue, ANY_QUEUE]
            .iter()
            .any(|q| self.queues.get(*q).is_some_and(|a| a.contains(&action)))
    }

    /// Why these permissions cannot be stored, if they cannot.
    pub fn problem(&self) -> Option<String> {
        if self.queues.len() > MAX_PERMISSION_QUEUES {
            return Some(format!(
                "permissions name {} queues; at most {MAX_PERMISSION_QUEUES}",
                self.queues.len()
            ));
        }
        self.queues
            .keys()
            .find(|q| *q != ANY_QUEUE && !valid_queue_name(q))
            .map(|q| format!("`{q}` is not a queue name"))
    }
}

/// A person (or service) that signs in: with a password, or through an
/// OIDC issuer (`subject`), never both.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub role: Role,
    #[serde(default)]
    pub permissions: Permissions,
    /// The Argon2id PHC string; `None` for a user who signs in by JWT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// `<issuer> <sub>` of a user made from a JWT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Pipeline runs allowed per calendar month (UTC); `None`: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_limit: Option<u64>,
    /// Bumped when the password changes: sessions made before end.
    #[serde(default)]
    pub credentials_epoch: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Compare-and-set version of the record.
    #[serde(default)]
    pub version: u64,
}

/// A user's API key, as stored: never the key, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserKey {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    /// The most the key may do; its user's role caps it too.
    pub role: Role,
    /// The key's last 4 characters, to tell keys apart.
    pub hint: String,
    /// Hex SHA-256 of the key.
    pub sha256: String,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A login session, stored under the SHA-256 of its token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub user_id: Uuid,
    /// The user's `credentials_epoch` when it began: a later password
    /// change ends it.
    pub epoch: u64,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A provider key a user stored (seed 002's BYOK), sealed: the value is
/// only ever decrypted to be sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredSecret {
    pub name: String,
    pub provider: String,
    /// `...` and the value's last 4 characters.
    pub key_hint: String,
    /// Nonce and ciphertext, base64.
    pub sealed: String,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
}

/// The most characters of a username.
pub const MAX_USERNAME_CHARS: usize = 64;
/// The fewest characters of a password (NIST SP 800-63B).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The most bytes of a password: hashing cost must not grow with input.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why `name` cannot be a username, if it cannot: 1-64 letters, digits and
/// `._@+-`, so it is safe in logs, URLs and HTML.
pub fn username_problem(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_USERNAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@+-".contains(c));
    (!ok).then(|| format!("username must be 1-{MAX_USERNAME_CHARS} letters, digits or `._@+-`"))
}

/// Why `password` cannot be set, if it cannot.
pub fn password_problem(password: &str) -> Option<String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Some(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    (password.len() > MAX_PASSWORD_BYTES)
        .then(|| format!("password must be at most {MAX_PASSWORD_BYTES} bytes"))
}

/// How a request proved who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// No credential: the API runs open (loopback development only).
    Open,
    /// The deployment's bootstrap key (`WARREN_API_KEY`).
    BootstrapKey,
    /// A login session (cookie).
    Session,
    /// A user's API key, by id.
    ApiKey(Uuid),
    /// A JWT bearer token.
    Jwt,
}

/// Whom a request acts for: a user (through a session, a key or a JWT), or
/// the deployment itself (the bootstrap key, an open API), which is an
/// admin owning what it creates as nobody's.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    /// `None`: the deployment itself.
    pub user_id: Option<Uuid>,
    pub username: String,
    /// The effective role: an API key's role caps its user's.
    pub role: Role,
    pub permissions: Permissions,
    pub credential: Credential,
}

/// What a request wants to do, as far as roles decide it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Read shared state: tasks, queues, topics, one's own records.
    Read,
    /// Change things: enqueue, publish, run, manage one's own records.
    Write,
    /// Cancel, delete or requeue tasks of a queue.
    Queue(&'a str, QueueAction),
    /// Users, bulk deletes, other users' records.
    Admin,
}

impl Principal {
    /// The deployment itself, as the bootstrap key or an open API.
    pub fn deployment(credential: Credential) -> Self {
        Principal {
            user_id: None,
            username: match credential {
                Credential::Open => "local".into(),
                _ => "bootstrap".into(),
            },
            role: Role::Admin,
            permissions: Permissions::default(),
            credential,
        }
    }

    /// A user, through `credential`, at most `cap` (an API key's role).
    pub fn of_user(user: &User, credential: Credential, cap: Role) -> Self {
        Principal {
            user_id: Some(user.id),
            username: user.username.clone(),
            role: user.role.min(cap),
            permissions: user.permissions.clone(),
            credential,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the role allows `action`.
    pub fn may(&self, action: Action) -> bool {
        match action {
            Action::Read => true,
            Action::Write => self.role >= Role::User,
            Action::Queue(queue, act) => match self.role {
                Role::Admin => true,
                Role::User => self.permissions.grants(queue, act),
                Role::Viewer => false,
            },
            Action::Admin => self.is_admin(),
        }
    }

    /// Whether it may change a record `owner` owns (`None`: the deployment's).
    pub fn owns(&self, owner: Option<Uuid>) -> bool {
        match self.role {
            Role::Admin => true,
            Role::User => owner.is_some() && owner == self.user_id,
            Role::Viewer => false,
        }
    }

    /// Whether it may read a record `owner` owns.
    pub fn sees(&self, owner: Option<Uuid>) -> bool {
        self.role != Role::User || (owner.is_some() && owner == self.user_id)
    }

    /// Whose records a list shows it: `None` every owner's, else only
    /// this user's.
    pub fn listing_scope(&self) -> Option<Option<Uuid>> {
        (self.role == Role::User).then_some(self.user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role, permissions: Permissions) -> Principal {
        let now = Utc::now();
        let u = User {
            id: Uuid::now_v7(),
            username: "u".into(),
            role,
            permissions,
            password_hash: None,
            subject: None,
            runs_limit: None,
            credentials_epoch: 0,
            created_at: now,
            updated_at: now,
            version: 0,
        };
        Principal::of_user(&u, Credential::Jwt, Role::Admin)
    }

    fn perms(json: &str) -> Permissions {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn permissions_read_as_seed_001_writes_them() {
        let p = perms(r#"{"queues": {"video": ["delete", "cancel"]}}"#);
        assert!(p.grants("video", QueueAction::Delete));
        assert!(p.grants("video", QueueAction::Cancel));
        assert!(!p.grants("video", QueueAction::Requeue));
        assert!(!p.grants("audio", QueueAction::Delete));
        assert!(perms(r#"{"queues": {"*": ["requeue"]}}"#).grants("any", QueueAction::Requeue));
        assert!(serde_json::from_str::<Permissions>(r#"{"queues": {"q": ["drop"]}}"#).is_err());
        assert!(serde_json::from_str::<Permissions>(r#"{"queue": {}}"#).is_err());
        assert!(perms(r#"{"queues": {"a b": []}}"#).problem().is_some());
        assert!(
            perms(r#"{"queues": {"a.b": [], "*": []}}"#)
                .problem()
                .is_none()
        );
    }

    #[test]
    fn roles_allow_what_the_table_says() {
        let viewer = user(Role::Viewer, perms(r#"{"queues": {"q": ["delete"]}}"#));
        let member = user(Role::User, perms(r#"{"queues": {"q": ["delete"]}}"#));
        let admin = user(Role::Admin, Permissions::default());
        let del = Action::Queue("q", QueueAction::Delete);
        let other = Action::Queue("other", QueueAction::Delete);
        for (who, expected) in [
            (&viewer, [true, false, false, false, false]),
            (&member, [true, true, true, false, false]),
            (&admin, [true, true, true, true, true]),
        ] {
            let got = [Action::Read, Action::Write, del, other, Action::Admin].map(|a| who.may(a));
            assert_eq!(got, expected, "{:?}", who.role);
        }
    }

    #[test]
    fn users_own_and_see_only_their_records_viewers_see_all_admins_own_all() {
        let member = user(Role::User, Permissions::default());
        let viewer = user(Role::Viewer, Permissions::default());
        let admin = user(Role::Admin, Permissions::default());
        let mine = member.user_id;
        let theirs = Some(Uuid::now_v7());
        assert!(member.owns(mine) && member.sees(mine));
        assert!(!member.owns(theirs) && !member.sees(theirs));
        assert!(!member.owns(None) && !member.sees(None));
        assert!(viewer.sees(theirs) && viewer.sees(None) && !viewer.owns(viewer.user_id));
        assert!(admin.owns(theirs) && admin.owns(None) && admin.sees(theirs));
        assert_eq!(member.listing_scope(), Some(mine));
        assert_eq!(admin.listing_scope(), None);
        assert_eq!(viewer.listing_scope(), None);
    }

    #[test]
    fn a_key_caps_its_user_s_role() {
        let now = Utc::now();
        let u = User {
            id: Uuid::now_v7(),
            username: "a".into(),
            role: Role::Admin,
            permissions: Permissions::default(),
            password_hash: None,
            subject: None,
            runs_limit: None,
            credentials_epoch: 0,
            created_at: now,
            updated_at: now,
            version: 0,
        };
        let p = Principal::of_user(&u, Credential::ApiKey(Uuid::nil()), Role::Viewer);
        assert_eq!(p.role, Role::Viewer);
        let demoted = User {
            role: Role::Viewer,
            ..u
        };
        let p = Principal::of_user(&demoted, Credential::ApiKey(Uuid::nil()), Role::Admin);
        assert_eq!(p.role, Role::Viewer, "a key never lifts its user");
    }

    #[test]
    fn usernames_and_passwords_are_checked() {
        assert!(username_problem("alice.smith@example.com").is_none());
        for bad in ["", "a b", "<script>", &"x".repeat(65), "ünï"] {
            assert!(username_problem(bad).is_some(), "{bad}");
        }
        assert!(password_problem("seven77").is_some());
        assert!(password_problem("eight888").is_none());
        assert!(password_problem(&"p".repeat(1025)).is_some());
        assert_eq!("ADMIN".parse::<Role>(), Ok(Role::Admin));
        assert!("root".parse::<Role>().is_err());
    }
}
