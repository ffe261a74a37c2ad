//! Triggers over HTTP. A webhook trigger runs its pipeline when its public
//! URL is called (no API key: the token is the credential); a wrong or
//! deleted token gets 404 and runs nothing; bad definitions get a 4xx and
//! store nothing. On the embedded backend, on the AWS wire (`warren dev
//! --backend aws` against the emulator) and through the real `pipelines`
//! Lambda binary. Last, a `* * * * *` schedule fires exactly once at the
//! next minute boundary on `warren dev`: the one slow test (≤ ~70 s).

use warren_tests::aws::{Provisioned, sha256_hex};
use warren_tests::lambda::{LambdaFunction, http_event};
use warren_tests::*;

const KEY: &str = "trigger-test-key";

fn flow() -> Value {
    json!({"name": "hooked", "steps": [
        {"name": "shape", "kind": "transform", "expression": "{got: event}"}
    ]})
}

/// POST `body` to a hook path exactly as an outside caller would: no API key.
async fn call_hook(w: &Warren, path: &str, body: &[u8]) -> Resp {
    let json = [("content-type", "application/json")];
    w.send_raw("POST", path, &json, Some(body.to_vec())).await
}

/// The token with one character changed.
fn tampered(token: &str) -> String {
    let last = token.chars().last().expect("a token");
    let other = if last == 'A' { 'B' } else { 'A' };
    format!("{}{other}", &token[..token.len() - 1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_run_with_their_token_and_bad_triggers_store_nothing() {
    webhooks_and_bad_triggers(Opts::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_run_with_their_token_and_bad_triggers_store_nothing_on_the_aws_wire() {
    webhooks_and_bad_triggers(Provisioned::new().dev()).await;
}

async fn webhooks_and_bad_triggers(opts: Opts) {
    let w = Warren::start(opts.api_key(KEY)).await;
    let p = w.create_pipeline(&flow()).await;
    let triggers = format!("/api/v1/pipelines/{p}/triggers");

    // GIVEN a webhook trigger: its token and URL are shown once
    let created = w
        .post(&triggers, &json!({"type": "webhook", "name": "orders in"}))
        .await;
    created.expect(201);
    let token = created.json["webhook_token"].as_str().unwrap().to_string();
    let trigger_id = created.json["id"].as_str().unwrap().to_string();
    let url = created.json["webhook_url"].as_str().unwrap();
    assert_eq!(url, format!("{}/hooks/{token}", w.base));
    let listed = w.get(&triggers).await;
    assert_eq!(listed.json[0]["id"], trigger_id.as_str());
    assert!(
        !listed.text.contains(&token[4..]),
        "the token is never shown again: {}",
        listed.text
    );

    // WHEN an outside caller posts to it, without the API key
    let hook = format!("/hooks/{token}");
    let r = call_hook(&w, &hook, br#"{"order": 7}"#).await;
    r.expect(202);
    assert_eq!(r.json["status"], "running");
    let id = r.json["execution_id"].as_str().unwrap().to_string();

    // THEN the pipeline runs on the body, as a webhook execution
    let e = wait_until("the webhook execution to finish", secs(20), async || {
        let e = w.get(&format!("/api/v1/executions/{id}")).await.json;
        (e["status"] != "running").then_some(e)
    })
    .await;
    assert_eq!(e["status"], "success", "{e}");
    assert_eq!(
        (e["trigger_type"].as_str(), e["trigger_id"].as_str()),
        (Some("webhook"), Some(trigger_id.as_str()))
    );
    assert_eq!(e["output"], json!({"got": {"order": 7}}));

    // AND a wrong token runs nothing
    let wrong = call_hook(&w, &format!("/hooks/{}", tampered(&token)), b"{}").await;
    wrong.expect_error(404, Some("not_found"));
    call_hook(&w, "/hooks/not-a-token", b"{}")
        .await
        .expect_error(404, Some("not_found"));
    assert_eq!(w.executions(&p).await.len(), 1);

    // AND once deleted, its token is dead
    w.delete(&format!("/api/v1/triggers/{trigger_id}"))
        .await
        .expect(204);
    call_hook(&w, &hook, b"{}")
        .await
        .expect_error(404, Some("not_found"));
    w.delete(&format!("/api/v1/triggers/{trigger_id}"))
        .await
        .expect_error(404, Some("not_found"));
    assert_eq!(w.executions(&p).await.len(), 1);

    // Bad definitions: a clear 4xx, nothing stored.
    let schedule = |config: Value| json!({"type": "schedule", "name": "s", "config": config});
    for (body, code) in [
        (schedule(json!({"cron": "0 25 * * *"})), "invalid_cron"),
        (
            schedule(json!({"cron": "0 9 * * *", "timezone": "Moon/Base"})),
            "invalid_timezone",
        ),
        (
            schedule(json!({"cron": "0 9 * * *", "jitter": 5})),
            "invalid_trigger",
        ),
        (json!({"type": "cron", "name": "x"}), "invalid_field"),
    ] {
        w.post(&triggers, &body).await.expect_error(400, Some(code));
    }
    let unknown = uuid::Uuid::now_v7();
    w.post(
        &format!("/api/v1/pipelines/{unknown}/triggers"),
        &json!({"type": "manual", "name": "m"}),
    )
    .await
    .expect_error(404, Some("not_found"));
    let listed = w.get(&triggers).await;
    assert_eq!(listed.json, json!([]), "nothing stored: {}", listed.text);
    assert_eq!(w.executions(&p).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipelines_lambda_serves_the_public_hook_route() {
    let aws = Provisioned::new();
    let hash = sha256_hex(KEY);
    let env = aws.function_env(&hash, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let mut f = LambdaFunction::start("pipelines", &env).await;
    let auth = [("x-api-key", KEY)];
    let body = |r: &Value| serde_json::from_str::<Value>(r["body"].as_str().unwrap()).unwrap();

    let created = f
        .invoke(http_event(
            "POST",
            "/api/v1/pipelines",
            &auth,
            Some(&flow()),
        ))
        .await
        .expect("pipelines answers");
    assert_eq!(created["statusCode"], 201, "{created}");
    let p = body(&created)["id"].as_str().unwrap().to_string();
    let gateway = [
        ("x-api-key", KEY),
        ("host", "abc123.execute-api.us-east-1.amazonaws.com"),
        ("x-forwarded-proto", "https"),
    ];
    let spec = json!({"type": "webhook", "name": "from outside"});
    let path = format!("/api/v1/pipelines/{p}/triggers");
    let made = f
        .invoke(http_event("POST", &path, &gateway, Some(&spec)))
        .await
        .expect("pipelines answers");
    assert_eq!(made["statusCode"], 201, "{made}");
    let token = body(&made)["webhook_token"].as_str().unwrap().to_string();
    assert_eq!(
        body(&made)["webhook_url"],
        format!("https://abc123.execute-api.us-east-1.amazonaws.com/hooks/{token}")
    );

    let hook = http_event(
        "POST",
        &format!("/hooks/{token}"),
        &[],
        Some(&json!({"a": 1})),
    );
    let run = f.invoke(hook).await.expect("pipelines answers");
    assert_eq!(run["statusCode"], 202, "no API key needed: {run}");
    let wrong = format!("/hooks/{}", tampered(&token));
    let refused = f
        .invoke(http_event("POST", &wrong, &[], Some(&json!({}))))
        .await
        .expect("pipelines answers");
    assert_eq!(refused["statusCode"], 404, "{refused}");
    let unauthenticated = f
        .invoke(http_event("GET", &path, &[], None))
        .await
        .expect("pipelines answers");
    assert_eq!(
        unauthenticated["statusCode"], 401,
        "the API still needs its key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minutely_schedule_fires_exactly_once_at_the_next_minute() {
    let w = Warren::default().await;
    let p = w.create_pipeline(&flow()).await;
    let triggers = format!("/api/v1/pipelines/{p}/triggers");
    let r = w
        .post(
            &triggers,
            &json!({"type": "schedule", "name": "every minute", "config": {"cron": "* * * * *"}}),
        )
        .await;
    r.expect(201);
    let fires: Vec<String> = r.json["next_fires"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    assert_eq!(fires.len(), 5);
    assert_eq!(r.json["config"]["timezone"], "UTC");
    let slot = ts(&json!(fires[0]));
    assert!(slot > chrono::Utc::now() && slot.timestamp() % 60 == 0);

    let runs = wait_until("the schedule to fire", secs(75), async || {
        let runs = w.executions(&p).await;
        (!runs.is_empty()).then_some(runs)
    })
    .await;
    assert!(chrono::Utc::now() >= slot, "not before its slot");
    // A few more ticks (one a second on `warren dev`) fire nothing more.
    tokio::time::sleep(secs(3)).await;
    let runs_after = w.executions(&p).await;
    assert_eq!(runs_after.len(), 1, "exactly one execution: {runs_after:?}");
    let e = &runs[0];
    assert_eq!(e["trigger_type"], "schedule", "{e}");
    assert_eq!(e["input"]["scheduled_for"], fires[0].as_str());
    assert_eq!(e["trigger_id"], r.json["id"]);
    let listed = w.get(&triggers).await;
    assert_eq!(listed.json[0]["next_fires"][0], fires[1].as_str());
}
