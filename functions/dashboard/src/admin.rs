//! The admin page (users, their roles and queue permissions, API keys,
//! stored provider keys) and the account page (one's own password and
//! keys). The forms post JSON to the API through the script.

use std::fmt::Write;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use warren::domain::identity::{Principal, Role, UserKey};
use warren::http::ApiError;
use warren::service::identity::{keys, secrets, users};

use crate::Board;
use crate::html::{self, Section, escape};

const ROLES: [Role; 3] = [Role::Viewer, Role::User, Role::Admin];

fn role_options(current: Role) -> String {
    ROLES
        .iter()
        .map(|r| {
            let selected = if *r == current { " selected" } else { "" };
            format!("<option{selected}>{}</option>", r.as_str())
        })
        .collect()
}

/// The caller's API keys, with the form that makes one (shown once).
fn keys_section(list: &[UserKey], who: &Principal) -> String {
    let mut rows = String::new();
    for k in list {
        let _ = write!(
            rows,
            r#"<tr data-key-id="{id}"><td>{name}</td><td>{role}</td><td><code>{hint}</code></td><td>{created}</td><td>{used}</td><td>{expires}</td><td><button type="button" data-action="revoke-key" data-method="DELETE" data-url="/api/v1/keys/{id}" data-confirm="Revoke this key?">Revoke</button></td></tr>"#,
            id = k.id,
            name = escape(&k.name),
            role = k.role.as_str(),
            hint = escape(&k.hint),
            created = html::time(Some(k.created_at)),
            used = html::time(k.last_used_at),
            expires = html::time(k.expires_at),
        );
    }
    format!(
        r#"<section><h2>API keys</h2><table id="keys"><thead><tr><th scope="col">Name</th><th scope="col">Role</th><th scope="col">Key</th><th scope="col">Created</th><th scope="col">Last used</th><th scope="col">Expires</th><th scope="col"></th></tr></thead><tbody>{rows}</tbody></table>
<form id="new-key" data-method="POST" data-url="/api/v1/keys" data-show="key" data-output="new-key-value"><label>Name <input name="name" required maxlength="100"></label>
<label>Role <select name="role">{roles}</select></label><button>Create key</button></form>
<p>A new key is shown once, here: <output id="new-key-value"></output></p></section>"#,
        roles = role_options(who.role),
    )
}

/// `GET /admin` (admins only).
pub async fn page(State(board): State<Board>, who: Principal) -> Response {
    if !who.is_admin() {
        return html::refusal(&who, StatusCode::FORBIDDEN, "admins only");
    }
    let deps = &board.deps;
    let loaded = async {
        let (list, _) = users::list(deps, 500, None).await?;
        let own_keys = match who.user_id {
            Some(_) => keys::list(deps, &who).await?,
            None => Vec::new(),
        };
        let stored = secrets::list(deps, who.user_id).await?;
        Ok::<_, warren::ServiceError>((list, own_keys, stored))
    };
    let (list, own_keys, stored) = match loaded.await {
        Ok(l) => l,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut rows = String::new();
    for u in &list {
        let permissions = serde_json::to_string(&u.permissions).unwrap_or_default();
        let granted: Vec<String> = u
            .permissions
            .queues
            .iter()
            .map(|(q, acts)| {
                let acts: Vec<&str> = acts.iter().map(|a| a.as_str()).collect();
                format!("<code>{}</code>: {}", escape(q), acts.join(", "))
            })
            .collect();
        let _ = write!(
            rows,
            r#"<tr data-user="{name}" data-user-id="{id}"><td>{name}{oidc}</td>
<td><form class="role" data-method="POST" data-url="/admin/users/{id}/role"><label class="sr">Role of {name} <select name="role">{roles}</select></label><button>Set</button></form></td>
<td>{granted}<form class="permissions" data-method="POST" data-url="/admin/users/{id}/permissions" data-shape="permissions" data-current="{permissions}">
<label>Queue <input name="queue" required maxlength="200"></label>
<label><input type="checkbox" name="actions" value="cancel"> cancel</label><label><input type="checkbox" name="actions" value="requeue"> requeue</label><label><input type="checkbox" name="actions" value="delete"> delete</label>
<button>Grant</button></form></td>
<td>{created}</td><td><button type="button" data-action="delete-user" data-method="DELETE" data-url="/admin/users/{id}" data-confirm="Delete user {name}?">Delete</button></td></tr>"#,
            id = u.id,
            name = escape(&u.username),
            oidc = if u.subject.is_some() {
                " <small>(OIDC)</small>"
            } else {
                ""
            },
            roles = role_options(u.role),
            granted = if granted.is_empty() {
                "none".into()
            } else {
                granted.join("<br>")
            },
            permissions = escape(&permissions),
            created = html::time(Some(u.created_at)),
        );
    }
    let mut secret_rows = String::new();
    for s in &stored {
        let _ = write!(
            secret_rows,
            r#"<tr><td>{name}</td><td>{provider}</td><td><code>{hint}</code></td><td>{used}</td><td><button type="button" data-action="delete-secret" data-method="DELETE" data-url="/api/v1/secrets/{name}" data-confirm="Delete this stored key?">Delete</button></td></tr>"#,
            name = escape(&s.name),
            provider = escape(&s.provider),
            hint = escape(&s.key_hint),
            used = html::time(s.last_used_at),
        );
    }
    let body = format!(
        r#"<section><h2>Users</h2><table id="users"><thead><tr><th scope="col">User</th><th scope="col">Role</th><th scope="col">Queue permissions</th><th scope="col">Created</th><th scope="col"></th></tr></thead><tbody>{rows}</tbody></table>
<h3>New user</h3><form id="new-user" data-method="POST" data-url="/admin/users"><label>Username <input name="username" required maxlength="64" autocomplete="off"></label>
<label>Password <input name="password" type="password" required minlength="8" autocomplete="new-password"></label>
<label>Role <select name="role">{roles}</select></label><button>Create user</button></form></section>
{keys}
<section><h2>Stored provider keys</h2><table id="secrets"><thead><tr><th scope="col">Name</th><th scope="col">Provider</th><th scope="col">Key</th><th scope="col">Last used</th><th scope="col"></th></tr></thead><tbody>{secret_rows}</tbody></table></section>"#,
        roles = role_options(Role::User),
        keys = keys_section(&own_keys, &who),
    );
    html::page(&who, "Admin", Section::Admin, &body)
}

/// `GET /account`: one's own password and API keys.
pub async fn account(State(board): State<Board>, who: Principal) -> Response {
    let own_keys = match who.user_id {
        Some(_) => match keys::list(&board.deps, &who).await {
            Ok(k) => k,
            Err(e) => return ApiError::from(e).into_response(),
        },
        None => Vec::new(),
    };
    let keys = match who.user_id {
        Some(_) => keys_section(&own_keys, &who),
        None => String::new(),
    };
    let body = format!(
        r#"<p>Signed in as <strong>{name}</strong> ({role}).</p>
<section><h2>Password</h2><form id="password" data-method="POST" data-url="/account/password" data-then="/login">
<label>Current password <input name="current_password" type="password" required autocomplete="current-password"></label>
<label>New password <input name="new_password" type="password" required minlength="8" autocomplete="new-password"></label>
<button>Change password</button></form><p><small>Changing it signs you out everywhere.</small></p></section>{keys}"#,
        name = escape(&who.username),
        role = who.role.as_str(),
    );
    html::page(&who, "Account", Section::Account, &body)
}
