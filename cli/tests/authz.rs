//! Who may do what, route by route: every route of the API, called by
//! every kind of caller (nobody, a viewer, a user with and without queue
//! permissions who owns or does not own the records, an admin, API keys of
//! each role, a JWT, a session cookie, the bootstrap key), against the
//! status the access rules give. A refused call changes nothing: the
//! whole visible state is compared before and after. The same table runs
//! on the embedded store and on DynamoDB + SQS (the emulator at
//! `AWS_ENDPOINT_URL` that `scripts/test` starts).
//!
//! Every call gets fresh records to act on (a pending and a failed task on
//! queue `q`, a pipeline of alice's with a trigger, an execution, an event,
//! a started event trigger, a key and a secret of alice's, a user to
//! change), so an allowed call cannot change what the next one finds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::Request;
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;
use warren::Deps;
use warren::adapters::clock::SystemClock;
use warren::config::JwtConfig;
use warren::domain::execution::TriggerType;
use warren::domain::identity::{Permissions, Role};
use warren::domain::pipeline::PipelineSpec;
use warren::domain::trigger::TriggerSpec;
use warren::handlers::Registry;
use warren::jwt::JwtSettings;
use warren::keys::sealing::MasterKey;
use warren::service::enqueue::{Enqueued, NewTask, enqueue};
use warren::service::identity::keys::{self, NewKey};
use warren::service::identity::secrets::{self, NewSecret};
use warren::service::identity::{sessions, users};
use warren::service::{events, executions, pipelines, topics, triggers};
use warren::testing::memory_deps;

const BOOTSTRAP: &str = "bootstrap-key-for-the-authz-table";
const PASSWORD: &str = "a-long-enough-password";

/// The callers, in the order of each row's expected statuses.
const CALLERS: [&str; 10] = [
    "anonymous",
    "viewer (cookie)",
    "alice: user, owner, queue permissions (key)",
    "bob: user, no permissions, owns nothing (key)",
    "admin (cookie)",
    "admin's admin key",
    "alice's viewer key",
    "alice (cookie)",
    "jwt (claim: user, owns nothing)",
    "bootstrap key",
];

/// One route: method, path (with `{task}`, `{failed}`, `{pipeline}`,
/// `{trigger}`, `{execution}`, `{event}`, `{key}`, `{user}`, `{hook}`
/// filled from the fresh records), body (`{unique}` in it made unique per
/// call), and the status each caller gets.
struct Row {
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    expect: [u16; 10],
}

fn row(method: &'static str, path: &'static str, body: Option<Value>, expect: [u16; 10]) -> Row {
    Row {
        method,
        path,
        body,
        expect,
    }
}

/// Every route of the API and what each caller gets.
#[rustfmt::skip]
fn table() -> Vec<Row> {
    let task = json!({"task_name": "echo", "queue_name": "q"});
    let pipeline = json!({"name": "p", "steps": [{"name": "t", "kind": "transform", "expression": "event"}]});
    let hook = json!({"type": "webhook", "name": "h"});
    // Columns: anonymous, viewer, alice, bob, admin, admin key, alice's
    // viewer key, alice's cookie, jwt, bootstrap key (see CALLERS).
    vec![
        // The task API.
        row("POST", "/api/v1/enqueue", Some(task.clone()), [401, 403, 201, 201, 201, 201, 403, 201, 201, 201]),
        row("POST", "/api/v1/enqueue/batch", Some(json!([task])), [401, 403, 201, 201, 201, 201, 403, 201, 201, 201]),
        row("GET", "/api/v1/tasks", None, [401, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        row("GET", "/api/v1/tasks/failed", None, [401, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        row("GET", "/api/v1/tasks/{task}", None, [401, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        row("GET", "/api/v1/tasks/{failed}/result", None, [401, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        row("GET", "/api/v1/queues", None, [401, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        row("PATCH", "/api/v1/tasks/{task}/progress", Some(json!({"progress": 50})), [401, 403, 200, 200, 200, 200, 403, 200, 200, 200]),
        row("DELETE", "/api/v1/tasks/{task}", None, [401, 403, 200, 403, 200, 200, 403, 200, 403, 200]),
        row("POST", "/api/v1/tasks/{failed}/requeue", None, [401, 403, 200, 403, 200, 200, 403, 200, 403, 200]),
        row("DELETE", "/api/v1/tasks?queue=q", None, [401, 403, 200, 403, 200, 200, 403, 200, 403, 200]),
        row("DELETE", "/api/v1/tasks?all=true", None, [401, 403, 403, 403, 200, 200, 403, 403, 403, 200]),
        // Pipelines, runs, triggers, usage.
        row("GET", "/api/v1/pipelines", None, [401, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        row("POST", "/api/v1/pipelines", Some(pipeline.clone()), [401, 403, 201, 201, 201, 201, 403, 201, 201, 201]),
        row("GET", "/api/v1/pipelines/{pipeline}", None, [401, 200, 200, 404, 200, 200, 200, 200, 404, 200]),
        row("PUT", "/api/v1/pipelines/{pipeline}", Some(pipeline), [401, 403, 200, 404, 200, 200, 403, 200, 404, 200]),
        row("DELETE", "/api/v1/pipelines/{pipeline}", None, [401, 403, 204, 404, 204, 204, 403, 204, 404, 204]),
        row("GET", "/api/v1/pipelines/{pipeline}/stats", None, [401, 200, 200, 404, 200, 200, 200, 200, 404, 200]),
        row("POST", "/api/v1/pipelines/{pipeline}/run", Some(json!({"n": 1})), [401, 403, 202, 404, 202, 202, 403, 202, 404, 202]),
        row("GET", "/api/v1/pipelines/{pipeline}/executions", None, [401, 200, 200, 404, 200, 200, 200, 200, 404, 200]),
        row("GET", "/api/v1/executions/{execution}", None, [401, 200, 200, 404, 200, 200, 200, 200, 404, 200]),
        row("GET", "/api/v1/usage", None, [401, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        row("GET", "/api/v1/pipelines/{pipeline}/triggers", None, [401, 200, 200, 404, 200, 200, 200, 200, 404, 200]),
        row("POST", "/api/v1/pipelines/{pipeline}/triggers", Some(hook), [401, 403, 201, 404, 201, 201, 403, 201, 404, 201]),
        row("DELETE", "/api/v1/triggers/{trigger}", None, [401, 403, 204, 404, 204, 204, 403, 204, 404, 204]),
        // The webhook is public: its token is the credential.
        row("POST", "/hooks/{hook}", Some(json!({"n": 1})), [202; 10]),
        // Events and topics.
        row("POST", "/events?workflow={pipeline}", Some(json!({"n": 1})), [401, 403, 202, 404, 202, 202, 403, 202, 404, 202]),
        row("GET", "/events/{event}", None, [401, 200, 200, 404, 200, 200, 200, 200, 404, 200]),
        row("POST", "/api/v1/events/{pipeline}", None, [401, 403, 200, 404, 200, 200, 403, 200, 404, 200]),
        row("GET", "/api/v1/events/{pipeline}", None, [401, 200, 200, 404, 200, 200, 200, 200, 404, 200]),
        row("DELETE", "/api/v1/events/{pipeline}", None, [401, 403, 200, 404, 200, 200, 403, 200, 404, 200]),
        row("GET", "/api/v1/topics/orders", None, [401, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        row("POST", "/api/v1/topics/orders/messages", Some(json!({"n": 1})), [401, 403, 202, 202, 202, 202, 403, 202, 202, 202]),
        // Identity: every role sees itself and manages its own keys; the
        // deployment (bootstrap key) is no user and has none.
        row("GET", "/me", None, [401, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        row("POST", "/account/password", Some(json!({"current_password": "wrong-password", "new_password": "another-password"})), [401, 403, 403, 403, 403, 403, 403, 403, 400, 400]),
        row("GET", "/api/v1/keys", None, [401, 200, 200, 200, 200, 200, 200, 200, 200, 400]),
        row("POST", "/api/v1/keys", Some(json!({"name": "k"})), [401, 201, 201, 201, 201, 201, 201, 201, 201, 400]),
        row("DELETE", "/api/v1/keys/{key}", None, [401, 404, 204, 404, 204, 204, 204, 204, 404, 204]),
        row("GET", "/api/v1/secrets", None, [401, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        row("POST", "/api/v1/secrets", Some(json!({"name": "s", "provider": "openai", "value": "sk-test-123456"})), [401, 403, 201, 201, 201, 201, 403, 201, 201, 201]),
        row("DELETE", "/api/v1/secrets/alice-secret", None, [401, 403, 204, 404, 404, 404, 403, 204, 404, 404]),
        // Users: admins only.
        row("GET", "/admin/users", None, [401, 403, 403, 403, 200, 200, 403, 403, 403, 200]),
        row("POST", "/admin/users", Some(json!({"username": "new-{unique}", "password": PASSWORD})), [401, 403, 403, 403, 201, 201, 403, 403, 403, 201]),
        row("POST", "/admin/users/{user}/role", Some(json!({"role": "viewer"})), [401, 403, 403, 403, 200, 200, 403, 403, 403, 200]),
        row("POST", "/admin/users/{user}/permissions", Some(json!({"queues": {"q": ["cancel"]}})), [401, 403, 403, 403, 200, 200, 403, 403, 403, 200]),
        row("POST", "/admin/users/{user}/limits", Some(json!({"runs_limit": 10})), [401, 403, 403, 403, 200, 200, 403, 403, 403, 200]),
        row("DELETE", "/admin/users/{user}", None, [401, 403, 403, 403, 204, 204, 403, 403, 403, 204]),
        // Public by design.
        row("GET", "/health", None, [200; 10]),
        row("GET", "/metrics", None, [200; 10]),
        row("GET", "/openapi.json", None, [200; 10]),
    ]
}

/// The credentials of each caller, as request headers.
struct Callers(Vec<Vec<(String, String)>>);

/// The users and credentials the table calls with.
struct World {
    deps: Deps,
    app: Router,
    callers: Callers,
    alice: Uuid,
    /// Every user the callers act as.
    users: Vec<Uuid>,
}

async fn world(deps: Deps, jwt: &TestIssuer) -> World {
    let user = |name: &str, role: Role, permissions: Permissions| users::NewUser {
        username: name.into(),
        password: PASSWORD.into(),
        role,
        permissions,
        runs_limit: None,
    };
    let q_perms: Permissions =
        serde_json::from_value(json!({"queues": {"q": ["cancel", "delete", "requeue"]}})).unwrap();
    let admin = users::create(&deps, user("admin", Role::Admin, Permissions::default()))
        .await
        .unwrap();
    let viewer = users::create(&deps, user("viewer", Role::Viewer, q_perms.clone()))
        .await
        .unwrap();
    let alice = users::create(&deps, user("alice", Role::User, q_perms))
        .await
        .unwrap();
    let bob = users::create(&deps, user("bob", Role::User, Permissions::default()))
        .await
        .unwrap();
    let key = |user: &warren::domain::identity::User, role: Role| {
        let deps = deps.clone();
        let principal = warren::domain::identity::Principal::of_user(
            user,
            warren::domain::identity::Credential::Session,
            Role::Admin,
        );
        async move {
            let new = NewKey {
                name: format!("{}-{}", principal.username, role.as_str()),
                role: Some(role),
                expires_at: None,
                expires_in_seconds: None,
            };
            keys::create(&deps, &principal, new).await.unwrap().0
        }
    };
    let cookie = |user: &warren::domain::identity::User| {
        let deps = deps.clone();
        let user = user.clone();
        async move {
            let token = sessions::start(&deps, &user, deps.now()).await.unwrap();
            format!("warren_session={token}")
        }
    };
    let h = |name: &str, value: String| vec![(name.to_string(), value)];
    let callers = Callers(vec![
        Vec::new(),
        h("cookie", cookie(&viewer).await),
        h("x-api-key", key(&alice, Role::User).await),
        h(
            "authorization",
            format!("Bearer {}", key(&bob, Role::User).await),
        ),
        h("cookie", cookie(&admin).await),
        h("x-api-key", key(&admin, Role::Admin).await),
        h("x-api-key", key(&alice, Role::Viewer).await),
        h("cookie", cookie(&alice).await),
        h(
            "authorization",
            format!("Bearer {}", jwt.token("carol", "user", 3600)),
        ),
        h("x-api-key", BOOTSTRAP.to_string()),
    ]);
    let app = warren_cli::app(deps.clone());
    // The JWT's user is made on first sight: before the table, so no row
    // sees it appear.
    let (status, _) = call(&app, "GET", "/me", &None, &callers.0[8]).await;
    assert_eq!(status, 200, "the JWT signs in");
    World {
        app,
        deps,
        callers,
        alice: alice.id,
        users: vec![admin.id, viewer.id, alice.id, bob.id],
    }
}

/// Fresh records for one call: what the path names.
async fn fresh_records(w: &World, path: &str) -> BTreeMap<&'static str, String> {
    let deps = &w.deps;
    let mut r = BTreeMap::new();
    if path.contains("/tasks") {
        let new = |name: &str| NewTask {
            owner: Some(w.alice),
            ..NewTask::named(name, "q")
        };
        let Ok(Enqueued::Created(task)) = enqueue(deps, new("echo")).await else {
            panic!("enqueue")
        };
        r.insert("task", task.to_string());
        let Ok(Enqueued::Created(failed)) = enqueue(deps, new("fail")).await else {
            panic!("enqueue")
        };
        let pending = deps.tasks().get(failed).await.unwrap().unwrap();
        let running = pending.start(deps.now(), Duration::from_secs(30)).unwrap();
        let warren::domain::AfterFailure::Failed(done) = running
            .fail(deps.now(), "failed on purpose".into(), false, 0.0)
            .unwrap()
        else {
            panic!("not failed")
        };
        deps.tasks().save(&pending, &done, None).await.unwrap();
        r.insert("failed", failed.to_string());
    }
    let pipeline_records = [
        "{pipeline}",
        "{trigger}",
        "{hook}",
        "{execution}",
        "{event}",
    ];
    if pipeline_records.iter().any(|name| path.contains(name)) {
        let spec: PipelineSpec = serde_json::from_value(json!({
            "name": "alice's",
            "options": {"event": "orders"},
            "steps": [{"name": "t", "kind": "transform", "expression": "event"}]
        }))
        .unwrap();
        let p = pipelines::create_for(deps, Some(w.alice), spec)
            .await
            .unwrap();
        r.insert("pipeline", p.id.to_string());
        let spec: TriggerSpec =
            serde_json::from_value(json!({"type": "webhook", "name": "h"})).unwrap();
        let created = triggers::create(deps, p.id, spec).await.unwrap();
        r.insert("trigger", created.trigger.id.to_string());
        r.insert("hook", created.token.unwrap());
        let e = executions::run_pipeline(deps, &p, TriggerType::Manual, None, json!({}))
            .await
            .unwrap();
        r.insert("execution", e.id.to_string());
        let events::Ingested::Queued { event_id, .. } =
            events::ingest_into(deps, json!({"n": 1}), &p, false)
                .await
                .unwrap()
        else {
            panic!("ingest")
        };
        r.insert("event", event_id.to_string());
        if path.starts_with("/api/v1/events/") {
            topics::start(deps, p.id, None).await.unwrap();
        }
    }
    if path.contains("{key}") {
        let alice = warren::domain::identity::Principal::of_user(
            &users::get(deps, w.alice).await.unwrap(),
            warren::domain::identity::Credential::Session,
            Role::Admin,
        );
        let new_key = NewKey {
            name: "spare".into(),
            role: None,
            expires_at: None,
            expires_in_seconds: None,
        };
        let (_, key) = keys::create(deps, &alice, new_key).await.unwrap();
        r.insert("key", key.id.to_string());
    }
    if path.contains("/secrets") {
        let secret = NewSecret {
            name: "alice-secret".into(),
            provider: "openai".into(),
            value: "sk-alice-1234567".into(),
        };
        secrets::put(deps, Some(w.alice), secret).await.unwrap();
    }
    if path.contains("{user}") {
        let victim = users::create(
            deps,
            users::NewUser {
                username: format!("victim-{}", Uuid::now_v7().simple()),
                password: PASSWORD.into(),
                role: Role::User,
                permissions: Permissions::default(),
                runs_limit: None,
            },
        )
        .await
        .unwrap();
        r.insert("user", victim.id.to_string());
    }
    r
}

/// Everything a call could change, as an admin reads it: this call's
/// records, every queue's counts, the newest pipelines and users (where a
/// refused create would show), the keys and secrets of every caller (times
/// of use left out: reading is not changing).
async fn state(w: &World, records: &BTreeMap<&'static str, String>) -> Value {
    let deps = &w.deps;
    let store = &*deps.store;
    let now = deps.now().timestamp();
    let id = |name: &str| records.get(name).map(|p| p.parse::<Uuid>().unwrap());
    // This call's tasks, and every queue's counts (a bulk delete shows there).
    let mut tasks = Vec::new();
    for name in ["task", "failed"] {
        if let Some(task) = id(name) {
            tasks.push(deps.tasks().get(task).await.unwrap());
        }
    }
    // Whatever a refused create would have added comes first in these.
    let (pipelines, _) = pipelines::list(deps, None, 5, None).await.unwrap();
    let (newest_users, _) = users::list(deps, 5, None).await.unwrap();
    let mut keys = Vec::new();
    let mut secrets = Vec::new();
    for user in w.users.iter().copied().chain(id("user")) {
        keys.extend(
            warren::table::api_keys::of_user(store, user, 100, now)
                .await
                .unwrap(),
        );
        let theirs = warren::table::secrets::of_owner(store, Some(user), 100).await;
        secrets.extend(theirs.unwrap());
    }
    secrets.extend(
        warren::table::secrets::of_owner(store, None, 100)
            .await
            .unwrap(),
    );
    let victim = match id("user") {
        Some(u) => users::get(deps, u).await.ok(),
        None => None,
    };
    let (mut pipeline, mut triggers, mut runs, mut subscription) = (None, Vec::new(), 0, None);
    if let Some(p) = id("pipeline") {
        pipeline = pipelines::get(deps, p, None).await.ok();
        triggers = triggers::list(deps, p, 100, None)
            .await
            .map(|t| t.0)
            .unwrap_or_default();
        runs = executions::list(deps, p, 100, None)
            .await
            .map(|e| e.0.len())
            .unwrap_or(0);
        subscription = topics::status(deps, p).await.ok().flatten();
    }
    let mut all = json!({
        "tasks": tasks,
        "queues": deps.tasks().queue_stats().await.unwrap(),
        "pipelines": pipelines,
        "pipeline": pipeline,
        "users": newest_users,
        "victim": victim,
        "keys": keys,
        "secrets": secrets,
        "triggers": triggers,
        "executions": runs,
        "subscription": subscription,
        "topic": topics::info(deps, "orders").await.unwrap(),
    });
    strip(&mut all, "last_used_at");
    all
}

fn strip(v: &mut Value, name: &str) {
    match v {
        Value::Object(m) => {
            m.remove(name);
            m.values_mut().for_each(|x| strip(x, name));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| strip(x, name)),
        _ => {}
    }
}

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    body: &Option<Value>,
    headers: &[(String, String)],
) -> (u16, Value) {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let answer = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = answer.status().as_u16();
    let bytes = to_bytes(answer.into_body(), usize::MAX).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Run the whole table; every mismatch is collected, then reported at once.
/// Each row runs in a world of its own (`make` gives fresh dependencies: a
/// fresh table on the AWS wire, where the emulator's queries grow with the
/// table). Its records are made again only after a call that changed
/// something; a refused call must leave exactly the state it found.
async fn run_table<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Deps>,
{
    let issuer = TestIssuer::start().await;
    let mut wrong = Vec::new();
    let mut calls = 0;
    for row in table() {
        let deps = make().await;
        let mut config = (*deps.config).clone();
        config.open = false;
        config.api_key = warren::http::ApiKey::new(Some(BOOTSTRAP));
        config.secrets_key = Some(MasterKey::generate());
        config.jwt = Some(JwtConfig {
            settings: issuer.settings(),
            role_claim: Some("role".into()),
            default_role: Role::User,
        });
        let deps = Deps {
            config: Arc::new(config),
            ..deps
        };
        let w = world(deps, &issuer).await;
        let mut records = fresh_records(&w, row.path).await;
        let mut known = None;
        for (i, caller) in CALLERS.iter().enumerate() {
            let mut path = row.path.to_string();
            for (name, value) in &records {
                path = path.replace(&format!("{{{name}}}"), value);
            }
            let expected = row.expect[i];
            let denied = matches!(expected, 400 | 401 | 403 | 404);
            let before = match (denied, known.take()) {
                (false, _) => None,
                (true, Some(state)) => Some(state),
                (true, None) => Some(state(&w, &records).await),
            };
            // `{unique}` in a body: a fresh name per call.
            let unique = Uuid::now_v7().simple().to_string();
            let body = row.body.as_ref().map(|b| {
                serde_json::from_str(&b.to_string().replace("{unique}", &unique)).unwrap()
            });
            let (status, body) = call(&w.app, row.method, &path, &body, &w.callers.0[i]).await;
            calls += 1;
            if status != expected {
                wrong.push(format!(
                    "{} {} as {caller}: expected {expected}, got {status} {body}",
                    row.method, row.path
                ));
            }
            if denied && status == expected {
                assert!(
                    body["error"].is_string() && body["code"].is_string(),
                    "{} {} as {caller}: a refusal is a JSON error: {body}",
                    row.method,
                    row.path
                );
                let after = state(&w, &records).await;
                if before.as_ref() != Some(&after) {
                    wrong.push(format!(
                        "{} {} as {caller}: refused with {status} but the state changed",
                        row.method, row.path
                    ));
                }
                known = Some(after);
            } else if !matches!(row.method, "GET" | "HEAD") {
                // It may have changed what the next caller would find.
                records = fresh_records(&w, row.path).await;
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {calls} calls answered other than the table says:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_caller_as_the_table_says_embedded() {
    run_table(|| async { memory_deps(Arc::new(SystemClock), Registry::standard()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_caller_as_the_table_says_on_the_aws_wire() {
    use warren::adapters::aws::{AwsClients, Resources};
    use warren::testing::aws::{emulator, unique_name};
    let clients = AwsClients::new(&emulator().await, None);
    let queues = Resources {
        table: String::new(),
        task_queue: unique_name("authz-tasks"),
        topic_queue: unique_name("authz-topics"),
    };
    let clients = &clients;
    let queues = &queues;
    run_table(|| async move {
        // A table per row; the queues are shared (nothing reads them here).
        let resources = Resources {
            table: unique_name("authz"),
            ..queues.clone()
        };
        warren_cli::provision::ensure(clients, &resources, Duration::from_secs(60))
            .await
            .unwrap();
        let memory = memory_deps(Arc::new(SystemClock), Registry::standard());
        let http = warren::adapters::http::GuardedHttpClient::new(Vec::new()).unwrap();
        warren::runtime::aws((*memory.config).clone(), http, &resources, None).await
    })
    .await;
}

/// An OIDC issuer for tests: an ES256 key made now, its JWKS served on
/// loopback, tokens signed with it.
struct TestIssuer {
    url: String,
    key: jsonwebtoken::EncodingKey,
}

impl TestIssuer {
    async fn start() -> TestIssuer {
        use base64::Engine;
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        }]});
        let app = Router::new().route(
            "/jwks.json",
            axum::routing::get(move || async move { axum::Json(jwks.clone()) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        TestIssuer {
            url,
            key: jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()),
        }
    }

    fn settings(&self) -> JwtSettings {
        JwtSettings {
            issuer: self.url.clone(),
            audience: "warren".into(),
            jwks_url: format!("{}/jwks.json", self.url),
            leeway: Duration::from_secs(5),
        }
    }

    /// A token for `sub` with `role`, valid for `seconds` (negative: expired).
    fn token(&self, sub: &str, role: &str, seconds: i64) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = json!({
            "iss": self.url, "aud": "warren", "sub": sub, "role": role,
            "preferred_username": sub, "iat": now, "exp": now + seconds,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}
