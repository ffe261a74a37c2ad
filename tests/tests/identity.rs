//! Identity and access end to end, over HTTP against `warren dev` as a
//! deployment serves (no `--open`, no bootstrap key): the first admin,
//! sessions, API keys, JWTs, rate limits, brute force, CSRF, stored
//! secrets.

use std::time::Duration;

use warren_tests::*;

const ADMIN_PASSWORD: &str = "the-first-admin-password";

/// `warren dev` whose first admin has [`ADMIN_PASSWORD`].
async fn deployment(extra: Opts) -> Warren {
    Warren::start(
        extra
            .signed_in()
            .env("WARREN_ADMIN_PASSWORD", ADMIN_PASSWORD),
    )
    .await
}

fn form(username: &str, password: &str) -> Vec<u8> {
    format!("username={username}&password={}", enc(password)).into_bytes()
}

/// Sign in with the form, as seed 001 does: the session cookie
/// (`warren_session=...`) and the answer.
async fn login(w: &Warren, username: &str, password: &str) -> (Option<String>, Resp) {
    let r = w
        .send_raw(
            "POST",
            "/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(form(username, password)),
        )
        .await;
    let cookie = r
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .map(str::to_string);
    (cookie, r)
}

async fn me(w: &Warren, headers: &[(&str, &str)]) -> Resp {
    w.send_raw("GET", "/me", headers, None).await
}

async fn json_call(w: &Warren, method: &str, path: &str, auth: (&str, &str), body: &Value) -> Resp {
    w.send_raw(
        method,
        path,
        &[auth, ("content-type", "application/json")],
        Some(body.to_string().into_bytes()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_s_password_is_printed_once_and_signs_in() {
    let mut w = Warren::start(Opts::new().signed_in().no_worker()).await;
    let line = w
        .started_stdout
        .iter()
        .find(|l| l.contains("created the first admin"))
        .cloned()
        .unwrap_or_else(|| panic!("no first-admin line in {:?}", w.started_stdout));
    let password = line
        .split("password `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .expect("the password is on the line");
    assert!(password.len() >= 20, "{line}");
    let (cookie, r) = login(&w, "admin", password).await;
    r.expect(303);
    let cookie = cookie.expect("a session cookie");
    let r = me(&w, &[("cookie", &cookie)]).await;
    r.expect(200);
    assert_eq!(r.json["username"], "admin");
    assert_eq!(r.json["role"], "admin");
    assert!(
        !w.log_tail(1000).contains(password),
        "the password reached the log"
    );
    w.restart().await;
    assert!(
        !w.started_stdout
            .iter()
            .any(|l| l.contains("created the first admin")),
        "printed again: {:?}",
        w.started_stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sets_a_session_cookie_that_logout_ends() {
    let w = deployment(Opts::new().no_worker()).await;
    let r = w.send_raw("GET", "/login", &[], None).await;
    r.expect(200);
    assert!(r.text.contains("<form") && !r.text.contains("Invalid credentials"));
    let (cookie, r) = login(&w, "admin", "not-the-password").await;
    r.expect(401);
    assert!(cookie.is_none());
    assert!(r.text.contains("Invalid credentials"), "{}", r.text);
    let (cookie, r) = login(&w, "admin", ADMIN_PASSWORD).await;
    r.expect(303);
    let set = r.header("set-cookie").unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP on loopback: {set}");
    let cookie = cookie.unwrap();
    let r = me(&w, &[("cookie", &cookie)]).await;
    r.expect(200);
    assert_eq!(r.json["auth"], "session");
    assert!(r.json["id"].is_string());
    assert_eq!(r.json["permissions"], json!({"queues": {}}));
    // The cookie works on the API too (the dashboard's JavaScript).
    w.send_raw("GET", "/api/v1/queues", &[("cookie", &cookie)], None)
        .await
        .expect(200);
    let r = w
        .send_raw("GET", "/logout", &[("cookie", &cookie)], None)
        .await;
    r.expect(303);
    assert_eq!(r.header("location"), Some("/login"));
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    // Ended on the server: the old cookie is refused.
    me(&w, &[("cookie", &cookie)])
        .await
        .expect_error(401, Some("unauthorized"));
    // JSON sign-in works as well.
    let r = w
        .send_raw(
            "POST",
            "/login",
            &[("content-type", "application/json")],
            Some(
                json!({"username": "ADMIN", "password": ADMIN_PASSWORD})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await;
    r.expect(200);
    assert_eq!(r.json["username"], "admin");
    assert!(r.json.get("password_hash").is_none(), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_ends_the_other_sessions() {
    let w = deployment(Opts::new().no_worker()).await;
    let (a, _) = login(&w, "admin", ADMIN_PASSWORD).await;
    let (b, _) = login(&w, "admin", ADMIN_PASSWORD).await;
    let (a, b) = (a.unwrap(), b.unwrap());
    let change = json!({"current_password": ADMIN_PASSWORD, "new_password": "a-new-password-42"});
    let r = json_call(&w, "POST", "/account/password", ("cookie", &a), &change).await;
    r.expect(200);
    let fresh = r
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("the changer gets a fresh session")
        .to_string();
    me(&w, &[("cookie", &fresh)]).await.expect(200);
    me(&w, &[("cookie", &b)]).await.expect_error(401, None);
    me(&w, &[("cookie", &a)]).await.expect_error(401, None);
    login(&w, "admin", ADMIN_PASSWORD).await.1.expect(401);
    login(&w, "admin", "a-new-password-42").await.1.expect(303);
    // A wrong current password changes nothing.
    let wrong = json!({"current_password": "nope-nope-nope", "new_password": "x-another-one-1"});
    json_call(&w, "POST", "/account/password", ("cookie", &fresh), &wrong)
        .await
        .expect_error(403, Some("forbidden"));
    me(&w, &[("cookie", &fresh)]).await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_shown_once_and_works_until_deleted() {
    let w = deployment(Opts::new().no_worker()).await;
    let (cookie, _) = login(&w, "admin", ADMIN_PASSWORD).await;
    let cookie = cookie.unwrap();
    let r = json_call(
        &w,
        "POST",
        "/api/v1/keys",
        ("cookie", &cookie),
        &json!({"name": "ci"}),
    )
    .await;
    r.expect(201);
    let key = r.json["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("wk_") && key.len() == 46, "{key}");
    assert_eq!(r.json["hint"], format!("...{}", &key[key.len() - 4..]));
    let id = r.json["id"].as_str().unwrap().to_string();
    let listed = w
        .send_raw("GET", "/api/v1/keys", &[("cookie", &cookie)], None)
        .await;
    listed.expect(200);
    assert!(
        !listed.text.contains(&key),
        "a listed key shows only its hint"
    );
    assert_eq!(listed.json[0]["name"], "ci");
    // Works in both headers; its use is recorded.
    w.send_raw("GET", "/api/v1/tasks", &[("x-api-key", &key)], None)
        .await
        .expect(200);
    let bearer = format!("Bearer {key}");
    let r = me(&w, &[("authorization", &bearer)]).await;
    r.expect(200);
    assert_eq!(r.json["auth"], "api_key");
    // Its use is written off the request's path.
    wait_until(
        "the key's use to be recorded",
        Duration::from_secs(5),
        async || {
            let listed = w
                .send_raw("GET", "/api/v1/keys", &[("cookie", &cookie)], None)
                .await;
            listed.json[0]["last_used_at"].is_string().then_some(())
        },
    )
    .await;
    // A key of a lower role stays at it.
    let viewer = json_call(
        &w,
        "POST",
        "/api/v1/keys",
        ("cookie", &cookie),
        &json!({"name": "ro", "role": "viewer"}),
    )
    .await;
    let ro = viewer.json["key"].as_str().unwrap().to_string();
    json_call(
        &w,
        "POST",
        "/api/v1/enqueue",
        ("x-api-key", &ro),
        &json!({"task_name": "echo"}),
    )
    .await
    .expect_error(403, Some("forbidden"));
    w.send_raw(
        "DELETE",
        &format!("/api/v1/keys/{id}"),
        &[("cookie", &cookie)],
        None,
    )
    .await
    .expect(204);
    w.send_raw("GET", "/api/v1/tasks", &[("x-api-key", &key)], None)
        .await
        .expect_error(401, Some("unauthorized"));
    // An expired key does not work.
    let r = json_call(
        &w,
        "POST",
        "/api/v1/keys",
        ("cookie", &cookie),
        &json!({"name": "short", "expires_in_seconds": 1}),
    )
    .await;
    let short = r.json["key"].as_str().unwrap().to_string();
    w.send_raw("GET", "/api/v1/tasks", &[("x-api-key", &short)], None)
        .await
        .expect(200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    w.send_raw("GET", "/api/v1/tasks", &[("x-api-key", &short)], None)
        .await
        .expect_error(401, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_from_the_issuer_sign_in_and_bad_ones_are_401() {
    let issuer = Issuer::start().await;
    let w = deployment(
        Opts::new()
            .no_worker()
            .args(["--jwt-issuer", &issuer.url])
            .args(["--jwt-audience", "warren"])
            .args(["--jwt-jwks-url", &format!("{}/jwks.json", issuer.url)])
            .args(["--jwt-role-claim", "groups"]),
    )
    .await;
    let good = issuer.token(
        json!({"sub": "u-1", "email": "ann@example.com", "groups": ["admin"]}),
        300,
    );
    let bearer = format!("Bearer {good}");
    let r = me(&w, &[("authorization", &bearer)]).await;
    r.expect(200);
    assert_eq!(r.json["auth"], "jwt");
    assert_eq!(r.json["username"], "ann@example.com");
    assert_eq!(r.json["role"], "admin");
    // The same subject is the same user; a token without a role claim gets the default.
    let plain = issuer.token(json!({"sub": "u-2"}), 300);
    let r = me(&w, &[("authorization", &format!("Bearer {plain}"))]).await;
    assert_eq!(r.json["role"], "user");
    let users = w
        .send_raw("GET", "/admin/users", &[("authorization", &bearer)], None)
        .await;
    users.expect(200);
    let oidc = users
        .json
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["oidc"] == true)
        .count();
    assert_eq!(oidc, 2, "{}", users.text);
    for (why, token) in [
        ("expired", issuer.token(json!({"sub": "u-1"}), -120)),
        (
            "not yet valid",
            issuer.token(
                json!({"sub": "u-1", "nbf": chrono::Utc::now().timestamp() + 600}),
                900,
            ),
        ),
        (
            "wrong audience",
            issuer.token(json!({"sub": "u-1", "aud": "other"}), 300),
        ),
        ("signed by another key", Issuer::foreign_token(&issuer.url)),
        ("tampered", format!("{}x", &good[..good.len() - 1])),
    ] {
        let r = me(&w, &[("authorization", &format!("Bearer {token}"))]).await;
        assert_eq!(r.status, 401, "{why}: {}", r.text);
        r.expect_error(401, Some("unauthorized"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_answers_429_with_retry_after() {
    let w = deployment(Opts::new().no_worker().args(["--rate-limit", "5"])).await;
    let (cookie, _) = login(&w, "admin", ADMIN_PASSWORD).await;
    let cookie = cookie.unwrap();
    for i in 0..5 {
        let r = w
            .send_raw("GET", "/api/v1/queues", &[("cookie", &cookie)], None)
            .await;
        r.expect(200);
        assert_eq!(r.header("ratelimit-policy"), Some("\"default\";q=5;w=60"));
        let left = format!("\"default\";r={};", 4 - i);
        assert!(
            r.header("ratelimit").unwrap().starts_with(&left),
            "{:?}",
            r.header("ratelimit")
        );
    }
    let r = w
        .send_raw("GET", "/api/v1/queues", &[("cookie", &cookie)], None)
        .await;
    r.expect_error(429, Some("rate_limited"));
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Anonymous callers are counted by address, apart from the user.
    for _ in 0..5 {
        w.send_raw("GET", "/api/v1/queues", &[], None)
            .await
            .expect(401);
    }
    w.send_raw("GET", "/api/v1/queues", &[], None)
        .await
        .expect(429);
    w.send_raw("GET", "/health", &[], None).await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_brute_force_slows_down() {
    let w = deployment(Opts::new().no_worker()).await;
    for i in 0..5 {
        let (_, r) = login(&w, "admin", &format!("guess-number-{i}")).await;
        r.expect(401);
    }
    // Now even the right password waits: the guesser learns nothing.
    let (cookie, r) = login(&w, "admin", ADMIN_PASSWORD).await;
    r.expect_error(429, Some("too_many_attempts"));
    assert!(cookie.is_none());
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(200)).await;
    let (_, r) = login(&w, "admin", "guess-number-6").await;
    r.expect(401);
    let (_, r) = login(&w, "admin", ADMIN_PASSWORD).await;
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((3..=4).contains(&wait), "the wait grows: {wait}");
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(200)).await;
    let (cookie, r) = login(&w, "admin", ADMIN_PASSWORD).await;
    r.expect(303);
    assert!(cookie.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_change_from_another_site_is_refused() {
    let w = deployment(Opts::new().no_worker()).await;
    let (cookie, _) = login(&w, "admin", ADMIN_PASSWORD).await;
    let cookie = cookie.unwrap();
    let body = json!({"task_name": "echo"}).to_string().into_bytes();
    for foreign in [
        vec![("origin", "https://evil.example")],
        vec![("sec-fetch-site", "cross-site")],
        vec![("origin", "null")],
    ] {
        let mut headers = vec![("cookie", cookie.as_str()), ("content-type", "text/plain")];
        headers.extend(foreign.iter().copied());
        let r = w
            .send_raw("POST", "/api/v1/enqueue", &headers, Some(body.clone()))
            .await;
        r.expect_error(403, Some("cross_site"));
    }
    let own = w.base.clone();
    let r = w
        .send_raw(
            "POST",
            "/api/v1/enqueue",
            &[
                ("cookie", &cookie),
                ("origin", &own),
                ("sec-fetch-site", "same-origin"),
            ],
            Some(body.clone()),
        )
        .await;
    r.expect(201);
    let queued = w
        .send_raw("GET", "/api/v1/queues", &[("cookie", &cookie)], None)
        .await;
    assert_eq!(
        queued.json[0]["pending"], 1,
        "only the same-origin call stored a task"
    );
    // Signing in from another site is refused too (login CSRF).
    let r = w
        .send_raw(
            "POST",
            "/login",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("origin", "https://evil.example"),
            ],
            Some(form("admin", ADMIN_PASSWORD)),
        )
        .await;
    r.expect_error(403, Some("cross_site"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_s_value_never_appears_in_answers_logs_or_the_store() {
    const VALUE: &str = "sk-live-9f8e7d6c5b4a-never-show-me";
    let receiver = Receiver::ok().await;
    let mut w = deployment(Opts::new().allow_loopback()).await;
    let (cookie, _) = login(&w, "admin", ADMIN_PASSWORD).await;
    let auth = ("cookie", cookie.as_deref().unwrap());
    let r = json_call(
        &w,
        "POST",
        "/api/v1/secrets",
        auth,
        &json!({"name": "OPENAI", "provider": "openai", "value": VALUE}),
    )
    .await;
    r.expect(201);
    assert_eq!(r.json["key_hint"], "...w-me");
    let mut seen = vec![r.text.clone()];
    let listed = w.send_raw("GET", "/api/v1/secrets", &[auth], None).await;
    assert_eq!(listed.json[0]["provider"], "openai");
    assert!(listed.json[0]["last_used_at"].is_null());
    seen.push(listed.text.clone());
    // An http task names it; the value goes out, and the endpoint echoes it back.
    let task = json!({"task_name": "http", "kwargs": {
        "url": receiver.url("/echo"), "method": "POST",
        "headers": {"Authorization": "Bearer {{secrets.OPENAI}}"}, "body": {"q": 1}}});
    let r = json_call(&w, "POST", "/api/v1/enqueue", auth, &task).await;
    r.expect(201);
    let id = r.json["task_id"].as_str().unwrap().to_string();
    let done = task_in_status(&w, &id, "completed", auth).await;
    let got = receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(
        got[0].header("authorization"),
        Some(format!("Bearer {VALUE}").as_str())
    );
    let result = done["result"].as_str().unwrap();
    assert!(
        result.contains("[secret]"),
        "the echo is scrubbed: {result}"
    );
    seen.push(done.to_string());
    seen.push(
        w.send_raw("GET", &format!("/api/v1/tasks/{id}/result"), &[auth], None)
            .await
            .text,
    );
    // A pipeline http step does the same.
    let p = json_call(
        &w,
        "POST",
        "/api/v1/pipelines",
        auth,
        &json!({"name": "byok", "steps": [
        {"name": "call", "kind": "http", "url": receiver.url("/step"),
         "headers": {"Authorization": "Bearer {{secrets.OPENAI}}"}}]}),
    )
    .await;
    let pid = p.json["id"].as_str().unwrap().to_string();
    let run = json_call(
        &w,
        "POST",
        &format!("/api/v1/pipelines/{pid}/run"),
        auth,
        &json!({}),
    )
    .await;
    let exec = run.json["execution_id"].as_str().unwrap().to_string();
    let e = finished_execution_as(&w, &exec, auth).await;
    assert_eq!(e["status"], "success", "{e}");
    seen.push(e.to_string());
    let got = receiver.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(
        got[1].header("authorization"),
        Some(format!("Bearer {VALUE}").as_str())
    );
    let listed = w.send_raw("GET", "/api/v1/secrets", &[auth], None).await;
    assert!(
        listed.json[0]["last_used_at"].is_string(),
        "its use is recorded"
    );
    // A task's webhook sends it in its extra headers; the task shows the reference.
    let hooked = json!({"task_name": "echo", "args": [1], "webhook_url": receiver.url("/hook"),
        "webhook_headers": {"Authorization": "Bearer {{secrets.OPENAI}}", "X-Team": "a"}});
    let r = json_call(&w, "POST", "/api/v1/enqueue", auth, &hooked).await;
    r.expect(201);
    let id = r.json["task_id"].as_str().unwrap().to_string();
    let got = receiver.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(got[2].uri, "/hook");
    assert_eq!(
        got[2].header("authorization"),
        Some(format!("Bearer {VALUE}").as_str())
    );
    assert_eq!(got[2].header("x-team"), Some("a"));
    assert!(got[2].header("webhook-signature").is_some());
    let shown = w
        .send_raw("GET", &format!("/api/v1/tasks/{id}"), &[auth], None)
        .await;
    assert_eq!(
        shown.json["webhook_headers"]["Authorization"],
        "Bearer {{secrets.OPENAI}}"
    );
    seen.push(shown.text.clone());
    for (headers, why) in [
        (json!({"webhook-signature": "v1,forged"}), "cannot set"),
        (json!({"X-A": 1}), "must be a string"),
        (json!({"X-A": "{{env.HOME}}"}), "secrets.NAME"),
        (json!({"bad name": "x"}), "cannot set"),
    ] {
        let task = json!({"task_name": "echo", "webhook_url": receiver.url("/hook"),
            "webhook_headers": headers});
        let r = json_call(&w, "POST", "/api/v1/enqueue", auth, &task).await;
        r.expect_error(400, Some("invalid_field"));
        assert!(
            r.json["error"].as_str().unwrap().contains(why),
            "{}",
            r.text
        );
    }
    // An unknown secret fails the task, naming only the name.
    let bad = json!({"task_name": "http", "max_retries": 0, "kwargs": {"url": receiver.url("/x"),
        "headers": {"Authorization": "{{secrets.NOPE}}"}}});
    let id = json_call(&w, "POST", "/api/v1/enqueue", auth, &bad)
        .await
        .json["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    let failed = task_in_status(&w, &id, "failed", auth).await;
    assert!(
        failed["error"].as_str().unwrap().contains("NOPE"),
        "{failed}"
    );
    for text in &seen {
        assert!(
            !text.contains(VALUE),
            "a response carried the value: {text}"
        );
    }
    // Stop and look at everything warren wrote: its log and its store.
    w.kill9();
    assert!(
        !w.log_tail(100_000).contains(VALUE),
        "the log carried the value"
    );
    for entry in std::fs::read_dir(w.data_dir()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes
                .windows(VALUE.len())
                .any(|win| win == VALUE.as_bytes()),
            "the store carries the value"
        );
    }
}

/// The task once in `status`, read with `auth`.
async fn task_in_status(w: &Warren, id: &str, status: &str, auth: (&str, &str)) -> Value {
    let path = format!("/api/v1/tasks/{id}");
    wait_until(
        &format!("task {id} to be {status}"),
        Duration::from_secs(20),
        async || {
            let r = w.send_raw("GET", &path, &[auth], None).await;
            (r.json["status"] == status).then_some(r.json)
        },
    )
    .await
}

/// The execution once finished, read with `auth`.
async fn finished_execution_as(w: &Warren, id: &str, auth: (&str, &str)) -> Value {
    let path = format!("/api/v1/executions/{id}");
    wait_until(
        "the execution to finish",
        Duration::from_secs(20),
        async || {
            let r = w.send_raw("GET", &path, &[auth], None).await;
            (r.json["status"] != "running").then_some(r.json)
        },
    )
    .await
}

/// An OIDC issuer made by the test: an ES256 key generated now, its JWKS on
/// loopback.
struct Issuer {
    url: String,
    key: jsonwebtoken::EncodingKey,
}

impl Issuer {
    async fn start() -> Issuer {
        let (pkcs8, jwk) = es256("k1");
        let jwks = json!({"keys": [jwk]});
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || async move { axum::Json(jwks.clone()) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Issuer {
            url,
            key: jsonwebtoken::EncodingKey::from_ec_der(&pkcs8),
        }
    }

    /// A token with `claims` over the defaults, expiring in `seconds`.
    fn token(&self, claims: Value, seconds: i64) -> String {
        sign(&self.key, "k1", &self.url, claims, seconds)
    }

    /// A token for `issuer` signed by a key it never published, under its kid.
    fn foreign_token(issuer: &str) -> String {
        let (pkcs8, _) = es256("k1");
        let key = jsonwebtoken::EncodingKey::from_ec_der(&pkcs8);
        sign(&key, "k1", issuer, json!({"sub": "u-1"}), 300)
    }
}

fn sign(
    key: &jsonwebtoken::EncodingKey,
    kid: &str,
    issuer: &str,
    claims: Value,
    seconds: i64,
) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut all = json!({"iss": issuer, "aud": "warren", "iat": now, "exp": now + seconds});
    for (k, v) in claims.as_object().unwrap() {
        all[k] = v.clone();
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &all, key).unwrap()
}

/// A fresh P-256 key: its PKCS#8 and its public JWK.
fn es256(kid: &str) -> (Vec<u8>, Value) {
    use base64::Engine;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
        "x": b64(&point[1..33]), "y": b64(&point[33..65])});
    (pkcs8.as_ref().to_vec(), jwk)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_s_monthly_runs_stop_at_its_limit_and_usage_shows_them() {
    let w = deployment(Opts::new()).await;
    let (cookie, _) = login(&w, "admin", ADMIN_PASSWORD).await;
    let admin = ("cookie", cookie.as_deref().unwrap());
    let ann = json!({"username": "ann", "password": "ann-password-1234", "role": "user", "runs_limit": 2});
    let r = json_call(&w, "POST", "/admin/users", admin, &ann).await;
    r.expect(201);
    assert_eq!(r.json["runs_limit"], 2);
    let (ann_cookie, _) = login(&w, "ann", "ann-password-1234").await;
    let ann = ("cookie", ann_cookie.as_deref().unwrap());
    let p = json_call(
        &w,
        "POST",
        "/api/v1/pipelines",
        ann,
        &json!({"name": "mine",
        "steps": [{"name": "t", "kind": "transform", "expression": "event"}]}),
    )
    .await;
    p.expect(201);
    let pid = p.json["id"].as_str().unwrap().to_string();
    assert_eq!(p.json["user_id"], json!(me(&w, &[ann]).await.json["id"]));
    for _ in 0..2 {
        json_call(
            &w,
            "POST",
            &format!("/api/v1/pipelines/{pid}/run"),
            ann,
            &json!({}),
        )
        .await
        .expect(202);
    }
    let refused = json_call(
        &w,
        "POST",
        &format!("/api/v1/pipelines/{pid}/run"),
        ann,
        &json!({}),
    )
    .await;
    refused.expect_error(429, Some("quota_exceeded"));
    let events = json_call(
        &w,
        "POST",
        &format!("/events?workflow={pid}"),
        ann,
        &json!({"n": 1}),
    )
    .await;
    events.expect_error(429, Some("quota_exceeded"));
    let usage = w.send_raw("GET", "/api/v1/usage", &[ann], None).await;
    usage.expect(200);
    let quota = &usage.json["quota"];
    assert_eq!(
        (quota["runs_used"].clone(), quota["runs_limit"].clone()),
        (json!(2), json!(2)),
        "{quota}"
    );
    assert_eq!(quota["runs_percentage"], 100.0);
    assert!(quota["days_remaining"].as_i64().unwrap() >= 1);
    // Two runs stored, not three: the refusal wrote nothing.
    let runs = w
        .send_raw(
            "GET",
            &format!("/api/v1/pipelines/{pid}/executions"),
            &[ann],
            None,
        )
        .await;
    assert_eq!(runs.json.as_array().unwrap().len(), 2, "{}", runs.text);
    // An admin lifts the limit; the user runs again.
    let id = me(&w, &[ann]).await.json["id"]
        .as_str()
        .unwrap()
        .to_string();
    json_call(
        &w,
        "POST",
        &format!("/admin/users/{id}/limits"),
        admin,
        &json!({"runs_limit": null}),
    )
    .await
    .expect(200);
    json_call(
        &w,
        "POST",
        &format!("/api/v1/pipelines/{pid}/run"),
        ann,
        &json!({}),
    )
    .await
    .expect(202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_admin_stays() {
    let w = deployment(Opts::new().no_worker()).await;
    let (cookie, _) = login(&w, "admin", ADMIN_PASSWORD).await;
    let admin = ("cookie", cookie.as_deref().unwrap());
    let id = me(&w, &[admin]).await.json["id"]
        .as_str()
        .unwrap()
        .to_string();
    json_call(
        &w,
        "POST",
        &format!("/admin/users/{id}/role"),
        admin,
        &json!({"role": "user"}),
    )
    .await
    .expect_error(409, Some("last_admin"));
    w.send_raw("DELETE", &format!("/admin/users/{id}"), &[admin], None)
        .await
        .expect_error(409, Some("last_admin"));
    // With a second admin, the first may step down.
    let second = json!({"username": "second", "password": "second-password-1", "role": "admin"});
    json_call(&w, "POST", "/admin/users", admin, &second)
        .await
        .expect(201);
    let r = json_call(
        &w,
        "POST",
        &format!("/admin/users/{id}/role"),
        admin,
        &json!({"role": "viewer"}),
    )
    .await;
    r.expect(200);
    assert_eq!(r.json["role"], "viewer");
    // Its role changed at once: the same session now only reads.
    w.send_raw("GET", "/admin/users", &[admin], None)
        .await
        .expect_error(403, Some("forbidden"));
    let listed = w.send_raw("GET", "/api/v1/queues", &[admin], None).await;
    listed.expect(200);
    let (second_cookie, _) = login(&w, "second", "second-password-1").await;
    let users = w
        .send_raw(
            "GET",
            "/admin/users",
            &[("cookie", &second_cookie.unwrap())],
            None,
        )
        .await;
    users.expect(200);
    assert!(
        !users.text.contains("password_hash") && !users.text.contains("argon2"),
        "{}",
        users.text
    );
}
