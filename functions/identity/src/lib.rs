//! Identity and access over HTTP (seed 001's routes, as JSON): sign-in
//! (`GET`/`POST /login`, `GET /logout`), `GET /me`, `POST
//! /account/password`, users (`/admin/users…`, admins only), the caller's
//! API keys (`/api/v1/keys`) and stored provider keys (`/api/v1/secrets`).

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;
use warren::Deps;
use warren::domain::identity::{Action, Permissions, Principal, Role, StoredSecret, User, UserKey};
use warren::http::auth::{SESSION_COOKIE, client_ip, cross_site, session_token};
use warren::http::dto::id_of;
use warren::http::openapi::{BadRequest, Conflict, ErrorBody, Faults, NotFound, Refused, TooLarge};
use warren::http::{ApiError, JsonBody, Params, Path, page_response, parse_json, require};
use warren::service::identity::keys::{self, NewKey};
use warren::service::identity::secrets::{self, NewSecret};
use warren::service::identity::sessions::{self, LoginError};
use warren::service::identity::users::{self, NewUser};

/// The most a sign-in or account body may hold.
const MAX_BODY: usize = 16 * 1024;
/// Where a browser goes after signing in when it names nowhere.
const AFTER_LOGIN: &str = "/";

pub fn router(deps: Deps) -> Router {
    // Every role may see itself and change its password and keys.
    let own = Router::new()
        .route("/me", get(me))
        .route("/account/password", post(change_password))
        .route("/api/v1/keys", get(list_keys).post(create_key))
        .route("/api/v1/keys/{id}", delete(delete_key));
    let rest = Router::new()
        .route("/api/v1/secrets", get(list_secrets).post(put_secret))
        .route("/api/v1/secrets/{name}", delete(delete_secret))
        .route("/admin/users", get(list_users).post(create_user))
        .route("/admin/users/{id}", delete(delete_user))
        .route("/admin/users/{id}/role", post(set_role))
        .route("/admin/users/{id}/permissions", post(set_permissions))
        .route("/admin/users/{id}/limits", post(set_limits));
    // Signing in and out needs no credentials.
    let public = Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", get(logout))
        .with_state(deps.clone());
    warren::http::authenticated(&deps, own)
        .merge(warren::http::api(&deps, rest))
        .merge(warren::http::private(public))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// What this function's routes say of themselves in the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(OpenApi)]
    #[openapi(paths(
        me,
        change_password,
        list_keys,
        create_key,
        delete_key,
        list_secrets,
        put_secret,
        delete_secret,
        list_users,
        create_user,
        delete_user,
        set_role,
        set_permissions,
        set_limits,
        login_page,
        login,
        logout
    ))]
    struct Doc;
    Doc::openapi()
}

/// A user as the API shows it: never its password hash.
#[derive(Serialize, ToSchema)]
struct UserResponse {
    id: Uuid,
    username: String,
    role: Role,
    permissions: Permissions,
    #[serde(skip_serializing_if = "Option::is_none")]
    runs_limit: Option<u64>,
    /// Signs in through the OIDC issuer (no password).
    oidc: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<User> for UserResponse {
    fn from(u: User) -> Self {
        UserResponse {
            oidc: u.subject.is_some(),
            id: u.id,
            username: u.username,
            role: u.role,
            permissions: u.permissions,
            runs_limit: u.runs_limit,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// The caller: `{"id", "username", "role", "permissions", "auth"}` (`id`
/// null for the deployment itself: the bootstrap key or an open API).
#[utoipa::path(
    get,
    path = "/me",
    operation_id = "get_me",
    tag = "identity",
    responses((status = 200, description = "who the request acts for", body = Me), Refused, Faults)
)]
async fn me(who: Principal) -> Json<serde_json::Value> {
    let auth = match who.credential {
        warren::domain::identity::Credential::Open => "open",
        warren::domain::identity::Credential::BootstrapKey => "bootstrap_key",
        warren::domain::identity::Credential::Session => "session",
        warren::domain::identity::Credential::ApiKey(_) => "api_key",
        warren::domain::identity::Credential::Jwt => "jwt",
    };
    Json(json!({
        "id": who.user_id,
        "username": who.username,
        "role": who.role,
        "permissions": who.permissions,
        "auth": auth,
    }))
}

/// `GET /me`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Me {
    /// null for the deployment itself (the bootstrap key, an open API).
    #[schema(required = true)]
    id: Option<Uuid>,
    username: String,
    role: Role,
    permissions: Permissions,
    auth: AuthKind,
}

/// How the request authenticated.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum AuthKind {
    Open,
    BootstrapKey,
    Session,
    ApiKey,
    Jwt,
}

/// A sign-in: form fields (seed 001) or a JSON object.
#[derive(Deserialize, ToSchema)]
struct Credentials {
    username: String,
    password: String,
    /// Where a browser goes next (a path on this site).
    #[serde(default)]
    next: Option<String>,
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"))
}

fn credentials(headers: &HeaderMap, body: &[u8]) -> Result<Credentials, ApiError> {
    if is_json(headers) {
        return parse_json(body);
    }
    let field = |name: &str| {
        form_urlencoded::parse(body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let next = field("next");
    match (field("username"), field("password")) {
        (Some(username), Some(password)) => Ok(Credentials {
            username,
            password,
            next,
        }),
        _ => Err(ApiError::invalid_field(
            "username and password are required",
        )),
    }
}

/// A path on this site to go to (never another site's URL).
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p,
        _ => AFTER_LOGIN,
    }
}

/// Whether the request reached warren over HTTPS (always on Lambda; a
/// proxy says so in `X-Forwarded-Proto`), so the cookie is marked `Secure`.
fn over_https(deps: &Deps, headers: &HeaderMap) -> bool {
    if deps.config.secure_cookies {
        return true;
    }
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').next().is_some_and(|p| p.trim() == "https"));
    forwarded
        || deps
            .config
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
}

/// The session cookie carrying `token` (an empty one that expires now,
/// to clear it).
fn session_cookie(deps: &Deps, headers: &HeaderMap, token: Option<&str>) -> HeaderValue {
    let max_age = match token {
        Some(_) => deps.config.session_ttl.as_secs(),
        None => 0,
    };
    let secure = match over_https(deps, headers) {
        true => "; Secure",
        false => "",
    };
    let value = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
        token.unwrap_or("")
    );
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("warren_session=; Max-Age=0"))
}

/// `GET /login`: the sign-in form (`?failed=1`: with "Invalid credentials").
#[utoipa::path(
    get,
    path = "/login",
    operation_id = "get_login_page",
    tag = "identity",
    security(()),
    params(LoginPageParams),
    responses(
        (status = 200, description = "the sign-in form", body = String, content_type = "text/html"),
        BadRequest,
    )
)]
async fn login_page(Params(p): Params<LoginPageParams>) -> Response {
    page(
        StatusCode::OK,
        p.failed.is_some(),
        p.next.as_deref().map(|n| local_path(Some(n))),
    )
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct LoginPageParams {
    /// Present (any value): the form says "Invalid credentials".
    failed: Option<String>,
    /// Where to go after signing in (a path on this site).
    next: Option<String>,
}

/// The form, escaped, in the dashboard's stylesheet (served beside it).
fn page(status: StatusCode, failed: bool, next: Option<&str>) -> Response {
    let error = match failed {
        true => r#"<p role="alert" class="error">Invalid credentials</p>"#,
        false => "",
    };
    let next = next
        .map(|n| format!(r#"<input type="hidden" name="next" value="{}">"#, escape(n)))
        .unwrap_or_default();
    let body = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Sign in · warren</title><link rel="stylesheet" href="/assets/style.css"></head>
<body><main class="signin"><h1>warren</h1>{error}
<form method="post" action="/login">{next}
<label>Username <input name="username" autocomplete="username" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form></main></body></html>"#
    );
    let mut answer = (status, Html(body)).into_response();
    let headers = answer.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self' 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    answer
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".into(),
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '"' => "&quot;".into(),
            '\'' => "&#39;".into(),
            c => c.to_string(),
        })
        .collect()
}

/// `POST /login`: a session cookie and, for a form, a redirect (303) to
/// `next`; for JSON, 200 with the user. Bad credentials: the form again
/// with "Invalid credentials" (401), or 401 JSON. After repeated failures
/// 429 with `Retry-After`.
#[utoipa::path(
    post,
    path = "/login",
    operation_id = "login",
    tag = "identity",
    security(()),
    request_body(content(
        (Credentials = "application/x-www-form-urlencoded"),
        (Credentials = "application/json"),
    )),
    responses(
        (status = 200, description = "JSON: signed in; the session cookie is set", body = UserResponse,
            headers(("Set-Cookie" = String, description = "the session cookie, `warren_session`"))),
        (status = 303, description = "a form: signed in; the session cookie is set, on to `next`",
            headers(("Location" = String), ("Set-Cookie" = String))),
        (status = 401, description = "bad credentials: the form again, or JSON",
            content((String = "text/html"), (ErrorBody = "application/json"))),
        (status = 400, description = "the credentials cannot be read", body = ErrorBody),
        (status = 403, description = "a sign-in from another site (`cross_site`)", body = ErrorBody),
        TooLarge,
        (status = 429, description = "too many failed sign-ins (`too_many_attempts`)", body = ErrorBody,
            headers(("Retry-After" = u64))),
        Faults,
    )
)]
async fn login(
    State(deps): State<Deps>,
    method: Method,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Response {
    let client = client_ip(request.extensions());
    if let Some(refusal) = cross_site(&method, &headers, &deps) {
        return refusal.into_response();
    }
    let body = match axum::body::to_bytes(request.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body is too large",
            )
            .into_response();
        }
    };
    let json = is_json(&headers);
    let creds = match credentials(&headers, &body) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let next = local_path(creds.next.as_deref()).to_string();
    match sessions::login(&deps, &creds.username, &creds.password, client).await {
        Ok((token, user)) => {
            let cookie = session_cookie(&deps, &headers, Some(&token));
            let mut answer = match json {
                true => Json(UserResponse::from(user)).into_response(),
                false => (StatusCode::SEE_OTHER, [(header::LOCATION, next)]).into_response(),
            };
            answer.headers_mut().insert(header::SET_COOKIE, cookie);
            answer
        }
        Err(LoginError::Invalid) => match json {
            true => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "Invalid credentials",
            )
            .into_response(),
            false => page(StatusCode::UNAUTHORIZED, true, Some(&next)),
        },
        Err(LoginError::Slowed(seconds)) => ApiError {
            retry_after: Some(seconds),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                format!("too many failed sign-ins; try again in {seconds} s"),
            )
        }
        .into_response(),
        Err(LoginError::Failed(e)) => ApiError::from(e).into_response(),
    }
}

/// `GET /logout`: the session ends (server-side) and its cookie is
/// cleared; 303 to the sign-in page.
#[utoipa::path(
    get,
    path = "/logout",
    operation_id = "logout",
    tag = "identity",
    security(()),
    responses(
        (status = 303, description = "signed out; on to the sign-in page",
            headers(("Location" = String), ("Set-Cookie" = String, description = "the cleared session cookie"))),
        Faults,
    )
)]
async fn logout(State(deps): State<Deps>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(token) = session_token(&headers) {
        sessions::end(&deps, &token).await?;
    }
    let mut answer = (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response();
    answer
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&deps, &headers, None));
    Ok(answer)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// `POST /account/password`: every session of the user ends; a caller
/// signed in by cookie gets a fresh session cookie.
#[utoipa::path(
    post,
    path = "/account/password",
    operation_id = "change_password",
    tag = "identity",
    request_body = PasswordChange,
    responses(
        (status = 200, description = "changed; every session of the user ends", body = Done),
        BadRequest, TooLarge, Refused, Faults,
    )
)]
async fn change_password(
    State(deps): State<Deps>,
    who: Principal,
    headers: HeaderMap,
    JsonBody(change): JsonBody<PasswordChange>,
) -> Result<Response, ApiError> {
    let id = warren::service::identity::user_of(&who)?;
    let user =
        users::change_password(&deps, id, change.current_password, change.new_password).await?;
    let mut answer = Json(json!({ "status": "ok" })).into_response();
    if let Some(old) = session_token(&headers) {
        sessions::end(&deps, &old).await?;
        let token = sessions::start(&deps, &user, deps.now()).await?;
        answer.headers_mut().insert(
            header::SET_COOKIE,
            session_cookie(&deps, &headers, Some(&token)),
        );
    }
    Ok(answer)
}

/// `{"status": "ok"}`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Done {
    #[schema(pattern = "^ok$")]
    status: String,
}

/// A key as listed: its hint, never the key.
#[derive(Serialize, ToSchema)]
struct KeyResponse {
    id: Uuid,
    name: String,
    role: Role,
    hint: String,
    created_at: DateTime<Utc>,
    #[schema(required = true)]
    expires_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    last_used_at: Option<DateTime<Utc>>,
    /// Only in the answer that makes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

impl From<UserKey> for KeyResponse {
    fn from(k: UserKey) -> Self {
        KeyResponse {
            id: k.id,
            name: k.name,
            role: k.role,
            hint: k.hint,
            created_at: k.created_at,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
            key: None,
        }
    }
}

/// `POST /api/v1/keys`: 201 with the key, shown this once.
#[utoipa::path(
    post,
    path = "/api/v1/keys",
    operation_id = "create_key",
    tag = "identity",
    request_body = NewKey,
    responses(
        (status = 201, description = "the key, shown this once in `key`", body = KeyResponse),
        BadRequest, Conflict, TooLarge, Refused, Faults,
    )
)]
async fn create_key(
    State(deps): State<Deps>,
    who: Principal,
    JsonBody(new): JsonBody<NewKey>,
) -> Result<Response, ApiError> {
    let (token, key) = keys::create(&deps, &who, new).await?;
    let mut body = KeyResponse::from(key);
    body.key = Some(token);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/keys",
    operation_id = "list_keys",
    tag = "identity",
    responses(
        (status = 200, description = "the caller's keys", body = Vec<KeyResponse>),
        BadRequest, Refused, Faults,
    )
)]
async fn list_keys(State(deps): State<Deps>, who: Principal) -> Result<Response, ApiError> {
    let keys: Vec<KeyResponse> = keys::list(&deps, &who)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(keys).into_response())
}

/// `DELETE /api/v1/keys/{id}`: 204; it stops working at once here, within
/// the credential cache's 30 s in other processes.
#[utoipa::path(
    delete,
    path = "/api/v1/keys/{id}",
    operation_id = "delete_key",
    tag = "identity",
    params(("id" = Uuid, Path, description = "the key's id")),
    responses(
        (status = 204, description = "the key is deleted"),
        BadRequest, NotFound, Refused, Faults,
    )
)]
async fn delete_key(
    State(deps): State<Deps>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    keys::delete(&deps, &who, id_of(&id, "key")?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A stored secret as listed: never its value.
#[derive(Serialize, ToSchema)]
struct SecretResponse {
    name: String,
    provider: String,
    key_hint: String,
    created_at: DateTime<Utc>,
    #[schema(required = true)]
    last_used_at: Option<DateTime<Utc>>,
}

impl From<StoredSecret> for SecretResponse {
    fn from(s: StoredSecret) -> Self {
        SecretResponse {
            name: s.name,
            provider: s.provider,
            key_hint: s.key_hint,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
        }
    }
}

/// `POST /api/v1/secrets`: 201; the value is sealed and never shown again.
#[utoipa::path(
    post,
    path = "/api/v1/secrets",
    operation_id = "put_secret",
    tag = "identity",
    request_body = NewSecret,
    responses(
        (status = 201, description = "the secret is stored (replacing one of that name)", body = SecretResponse),
        BadRequest, Conflict, TooLarge, Refused, Faults,
    )
)]
async fn put_secret(
    State(deps): State<Deps>,
    who: Principal,
    JsonBody(new): JsonBody<NewSecret>,
) -> Result<Response, ApiError> {
    let stored = secrets::put(&deps, who.user_id, new).await?;
    Ok((StatusCode::CREATED, Json(SecretResponse::from(stored))).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/secrets",
    operation_id = "list_secrets",
    tag = "identity",
    responses((status = 200, description = "the caller's stored secrets", body = Vec<SecretResponse>), Refused, Faults)
)]
async fn list_secrets(State(deps): State<Deps>, who: Principal) -> Result<Response, ApiError> {
    let list: Vec<SecretResponse> = secrets::list(&deps, who.user_id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(list).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/secrets/{name}",
    operation_id = "delete_secret",
    tag = "identity",
    params(("name" = String, Path, description = "the secret's name")),
    responses(
        (status = 204, description = "the secret is deleted"),
        BadRequest, NotFound, Refused, Faults,
    )
)]
async fn delete_secret(
    State(deps): State<Deps>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    secrets::delete(&deps, who.user_id, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PageParams {
    /// Users per page: 100 by default, at most 1000 (larger asks get 1000, 0 gets 1).
    limit: Option<usize>,
    /// Where the page starts: the `X-Next-Cursor` of the previous page
    /// (anything else answers 400 `invalid_cursor`).
    cursor: Option<String>,
}

/// `GET /admin/users`: a JSON list, newest first.
#[utoipa::path(
    get,
    path = "/admin/users",
    operation_id = "list_users",
    tag = "admin",
    params(PageParams),
    responses(
        (status = 200, description = "one page of users, newest first", body = Vec<UserResponse>),
        BadRequest, Refused, Faults,
    )
)]
async fn list_users(
    State(deps): State<Deps>,
    who: Principal,
    uri: axum::http::Uri,
    Params(p): Params<PageParams>,
) -> Result<Response, ApiError> {
    require(&who, Action::Admin)?;
    let before = match p.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(warren::http::decode_cursor(c)?),
        None => None,
    };
    let (list, next) = users::list(&deps, p.limit.unwrap_or(100), before).await?;
    let shown: Vec<UserResponse> = list.into_iter().map(Into::into).collect();
    Ok(page_response(&uri, shown, next))
}

/// `POST /admin/users`: 201 with the user.
#[utoipa::path(
    post,
    path = "/admin/users",
    operation_id = "create_user",
    tag = "admin",
    request_body = NewUser,
    responses(
        (status = 201, description = "the user", body = UserResponse),
        BadRequest, Conflict, TooLarge, Refused, Faults,
    )
)]
async fn create_user(
    State(deps): State<Deps>,
    who: Principal,
    JsonBody(new): JsonBody<NewUser>,
) -> Result<Response, ApiError> {
    require(&who, Action::Admin)?;
    let user = users::create(&deps, new).await?;
    Ok((StatusCode::CREATED, Json(UserResponse::from(user))).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RoleChange {
    role: Role,
}

#[utoipa::path(
    post,
    path = "/admin/users/{id}/role",
    operation_id = "set_user_role",
    tag = "admin",
    params(("id" = Uuid, Path, description = "the user's id")),
    request_body = RoleChange,
    responses(
        (status = 200, description = "the user with its new role", body = UserResponse),
        BadRequest, NotFound, Conflict, TooLarge, Refused, Faults,
    )
)]
async fn set_role(
    State(deps): State<Deps>,
    who: Principal,
    Path(id): Path<String>,
    JsonBody(change): JsonBody<RoleChange>,
) -> Result<Response, ApiError> {
    require(&who, Action::Admin)?;
    let user = users::set_role(&deps, id_of(&id, "user")?, change.role).await?;
    Ok(Json(UserResponse::from(user)).into_response())
}

/// `POST /admin/users/{id}/permissions` with seed 001's
/// `{"queues": {"video": ["delete", "cancel"]}}`: replaces them.
#[utoipa::path(
    post,
    path = "/admin/users/{id}/permissions",
    operation_id = "set_user_permissions",
    tag = "admin",
    params(("id" = Uuid, Path, description = "the user's id")),
    request_body = Permissions,
    responses(
        (status = 200, description = "the user with its new permissions", body = UserResponse),
        BadRequest, NotFound, Conflict, TooLarge, Refused, Faults,
    )
)]
async fn set_permissions(
    State(deps): State<Deps>,
    who: Principal,
    Path(id): Path<String>,
    JsonBody(permissions): JsonBody<Permissions>,
) -> Result<Response, ApiError> {
    require(&who, Action::Admin)?;
    let user = users::set_permissions(&deps, id_of(&id, "user")?, permissions).await?;
    Ok(Json(UserResponse::from(user)).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Limits {
    /// Pipeline runs per calendar month; null (or absent): no limit.
    runs_limit: Option<u64>,
}

/// `POST /admin/users/{id}/limits` `{"runs_limit": n}` (null: none): pipeline
/// runs per calendar month.
#[utoipa::path(
    post,
    path = "/admin/users/{id}/limits",
    operation_id = "set_user_limits",
    tag = "admin",
    params(("id" = Uuid, Path, description = "the user's id")),
    request_body = Limits,
    responses(
        (status = 200, description = "the user with its new limit", body = UserResponse),
        BadRequest, NotFound, Conflict, TooLarge, Refused, Faults,
    )
)]
async fn set_limits(
    State(deps): State<Deps>,
    who: Principal,
    Path(id): Path<String>,
    JsonBody(limits): JsonBody<Limits>,
) -> Result<Response, ApiError> {
    require(&who, Action::Admin)?;
    let user = users::set_runs_limit(&deps, id_of(&id, "user")?, limits.runs_limit).await?;
    Ok(Json(UserResponse::from(user)).into_response())
}

/// `DELETE /admin/users/{id}`: 204; its keys and secrets go with it.
#[utoipa::path(
    delete,
    path = "/admin/users/{id}",
    operation_id = "delete_user",
    tag = "admin",
    params(("id" = Uuid, Path, description = "the user's id")),
    responses(
        (status = 204, description = "the user is deleted, its keys and secrets with it"),
        BadRequest, NotFound, Conflict, Refused, Faults,
    )
)]
async fn delete_user(
    State(deps): State<Deps>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require(&who, Action::Admin)?;
    users::delete(&deps, id_of(&id, "user")?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
