//! The dashboard over HTTP, without a browser (tests/browser drives one):
//! sign-in guards, security headers, the assets' caching, what each role
//! is offered, the failed-task groups and their one-call requeue, and the
//! live snapshot, on the embedded store and on DynamoDB + SQS.

use std::time::Duration;

use warren_tests::aws::Provisioned;
use warren_tests::*;

const ADMIN_PASSWORD: &str = "dashboard-admin-password";

async fn deployment(opts: Opts) -> Warren {
    Warren::start(
        opts.signed_in()
            .env("WARREN_ADMIN_PASSWORD", ADMIN_PASSWORD),
    )
    .await
}

/// A session cookie (`warren_session=…`) of `username`.
async fn session(w: &Warren, username: &str, password: &str) -> String {
    let body = json!({"username": username, "password": password}).to_string();
    let r = w
        .send_raw(
            "POST",
            "/login",
            &[("content-type", "application/json")],
            Some(body.into_bytes()),
        )
        .await;
    r.expect(200);
    r.header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string()
}

/// A call as the browser's script makes it: the cookie, and its own origin.
async fn call(w: &Warren, cookie: &str, method: &str, path: &str, body: Option<Value>) -> Resp {
    let origin = w.base.clone();
    let mut headers = vec![("cookie", cookie), ("origin", origin.as_str())];
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    w.send_raw(
        method,
        path,
        &headers,
        body.map(|b| b.to_string().into_bytes()),
    )
    .await
}

async fn enqueue(w: &Warren, cookie: &str, body: Value) -> String {
    let r = call(w, cookie, "POST", "/api/v1/enqueue", Some(body)).await;
    r.expect(201);
    r.json["task_id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_need_a_session_and_carry_strict_headers() {
    let w = deployment(Opts::new().no_worker()).await;
    for path in [
        "/",
        "/failed",
        "/pipelines",
        "/admin",
        "/account",
        "/tasks/x",
    ] {
        let r = w.send_raw("GET", path, &[], None).await;
        r.expect(303);
        let to = r.header("location").unwrap();
        assert!(to.starts_with("/login?next=/"), "{path}: {to}");
    }
    let r = w.send_raw("GET", "/?status=failed", &[], None).await;
    assert_eq!(
        r.header("location"),
        Some("/login?next=/%3Fstatus%3Dfailed")
    );
    w.send_raw("GET", "/dashboard/snapshot", &[], None)
        .await
        .expect_error(401, Some("unauthorized"));
    // Signing in from the form lands on the overview.
    let form = format!("username=admin&password={ADMIN_PASSWORD}");
    let r = w
        .send_raw(
            "POST",
            "/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(form.into_bytes()),
        )
        .await;
    assert_eq!((r.status, r.header("location")), (303, Some("/")));

    let admin = session(&w, "admin", ADMIN_PASSWORD).await;
    for path in ["/", "/failed", "/pipelines", "/admin", "/account"] {
        let r = w.send_raw("GET", path, &[("cookie", &admin)], None).await;
        r.expect(200);
        let csp = r.header("content-security-policy").unwrap();
        assert!(
            csp.contains("script-src 'self';") && !csp.contains("unsafe"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("referrer-policy"), Some("same-origin"));
        assert!(
            !r.text.contains("<script>") && !r.text.contains(" style="),
            "{path}: inline code"
        );
    }
    w.send_raw(
        "GET",
        &format!("/tasks/{}", uuid::Uuid::now_v7()),
        &[("cookie", &admin)],
        None,
    )
    .await
    .expect(404);
    // The assets: linked by content hash, cached for good, 304 when held.
    let page = w.send_raw("GET", "/", &[("cookie", &admin)], None).await;
    let href = page
        .text
        .split("src=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    assert!(href.starts_with("/assets/app.js?v="), "{href}");
    let js = w.send_raw("GET", &href, &[], None).await;
    js.expect(200);
    assert!(
        js.header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(
        js.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let etag = js.header("etag").unwrap().to_string();
    let unversioned = w
        .send_raw("GET", "/assets/app.js", &[("if-none-match", &etag)], None)
        .await;
    unversioned.expect(304);
    // A link without the content hash (the sign-in page's) is revalidated.
    assert_eq!(unversioned.header("cache-control"), Some("no-cache"));
    w.send_raw("GET", "/assets/nope.js", &[], None)
        .await
        .expect(404);
}

/// Task `id` once `pred` holds of it (within 60 s).
async fn task_where(w: &Warren, cookie: &str, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_until(&format!("task {id}"), Duration::from_secs(60), async || {
        let r = call(w, cookie, "GET", &format!("/api/v1/tasks/{id}"), None).await;
        (r.status == 200 && pred(&r.json)).then_some(r.json)
    })
    .await
}

/// The groups and their requeue, the snapshot and the roles' buttons, on
/// whatever backend `w` runs.
async fn failed_groups_and_roles(w: &Warren, admin_name: &str) {
    let admin = session(w, admin_name, ADMIN_PASSWORD).await;
    let mut failing = Vec::new();
    for i in 0..3 {
        let message = format!(
            "upload {i} of {} failed after {i}.5 s",
            uuid::Uuid::now_v7()
        );
        failing.push(
            enqueue(
                w,
                &admin,
                json!({"task_name": "fail", "queue_name": "video",
                "kwargs": {"message": message, "retryable": false}}),
            )
            .await,
        );
    }
    let other = enqueue(
        w,
        &admin,
        json!({"task_name": "fail", "queue_name": "mail",
        "kwargs": {"message": "smtp refused", "retryable": false}}),
    )
    .await;
    for id in failing.iter().chain([&other]) {
        task_where(w, &admin, id, |t| t["status"] == "failed").await;
    }
    let groups = call(w, &admin, "GET", "/api/v1/tasks/failed/groups", None).await;
    groups.expect(200);
    let list = groups.json["groups"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{}", groups.text);
    assert_eq!(
        list[0]["pattern"],
        "upload <n> of <id> failed after <n>.<n> s"
    );
    assert_eq!(
        (list[0]["count"].as_u64(), &list[0]["queues"]),
        (Some(3), &json!(["video"]))
    );
    let fp = list[0]["fingerprint"].as_str().unwrap().to_string();

    // The page offers the group's requeue, stamped with when it was shown.
    let page = call(w, &admin, "GET", "/failed", None).await;
    assert!(
        page.text.contains(&format!(r#"data-fingerprint="{fp}""#)),
        "{}",
        page.text
    );
    assert!(page.text.contains("Requeue this group"));

    // A viewer sees no destructive button, and the API refuses it.
    call(
        w,
        &admin,
        "POST",
        "/admin/users",
        Some(json!({"username": "vera", "password": "vera-password", "role": "viewer"})),
    )
    .await
    .expect(201);
    let viewer = session(w, "vera", "vera-password").await;
    let task_page = call(w, &viewer, "GET", &format!("/tasks/{}", failing[0]), None).await;
    task_page.expect(200);
    assert!(
        !task_page.text.contains("data-action="),
        "{}",
        task_page.text
    );
    assert!(
        !call(w, &viewer, "GET", "/failed", None)
            .await
            .text
            .contains("Requeue this group")
    );
    call(w, &viewer, "GET", "/admin", None).await.expect(403);
    call(
        w,
        &viewer,
        "POST",
        "/api/v1/tasks/failed/requeue",
        Some(json!({"fingerprint": fp})),
    )
    .await
    .expect_error(403, Some("forbidden"));

    // A user may requeue only where its permissions say.
    let created = call(
        w,
        &admin,
        "POST",
        "/admin/users",
        Some(json!({"username": "uma", "password": "uma-password", "role": "user"})),
    )
    .await;
    let uma_id = created.json["id"].as_str().unwrap().to_string();
    call(
        w,
        &admin,
        "POST",
        &format!("/admin/users/{uma_id}/permissions"),
        Some(json!({"queues": {"mail": ["requeue"]}})),
    )
    .await
    .expect(200);
    let uma = session(w, "uma", "uma-password").await;
    let on_video = call(w, &uma, "GET", &format!("/tasks/{}", failing[0]), None).await;
    assert!(!on_video.text.contains(r#"data-action="requeue""#));
    let on_mail = call(w, &uma, "GET", &format!("/tasks/{other}"), None).await;
    assert!(
        on_mail.text.contains(r#"data-action="requeue""#),
        "{}",
        on_mail.text
    );
    call(
        w,
        &uma,
        "POST",
        "/api/v1/tasks/failed/requeue",
        Some(json!({"fingerprint": fp})),
    )
    .await
    .expect_error(403, Some("forbidden"));

    // Two clicks: the group is requeued once; a task that failed after the
    // page was shown is not requeued by it.
    let shown_at = chrono::Utc::now() - chrono::Duration::seconds(3600);
    let stale = json!({"fingerprint": fp, "failed_before": shown_at});
    let r = call(
        w,
        &admin,
        "POST",
        "/api/v1/tasks/failed/requeue",
        Some(stale),
    )
    .await;
    assert_eq!(
        r.json,
        json!({"requeued": 0, "forbidden": 0, "skipped": 0}),
        "{}",
        r.text
    );
    let body = json!({"fingerprint": fp, "queue": "video"});
    let (a, b) = tokio::join!(
        call(
            w,
            &admin,
            "POST",
            "/api/v1/tasks/failed/requeue",
            Some(body.clone())
        ),
        call(
            w,
            &admin,
            "POST",
            "/api/v1/tasks/failed/requeue",
            Some(body)
        ),
    );
    a.expect(200);
    b.expect(200);
    let total = a.json["requeued"].as_u64().unwrap() + b.json["requeued"].as_u64().unwrap();
    assert_eq!(total, 3, "{} {}", a.text, b.text);
    for id in &failing {
        // Run again (and fail again, once).
        task_where(w, &admin, id, |t| {
            t["status"] == "failed" && t["attempts"] == 1
        })
        .await;
    }
    // The bad fingerprint is a clear 400.
    call(
        w,
        &admin,
        "POST",
        "/api/v1/tasks/failed/requeue",
        Some(json!({"fingerprint": "<script>"})),
    )
    .await
    .expect_error(400, Some("invalid_field"));

    // The snapshot: cards and the filtered table, as the socket pushes them.
    let snap = call(w, &admin, "GET", "/dashboard/snapshot?queue=mail", None).await;
    snap.expect(200);
    assert_eq!(snap.json["type"], "update");
    assert!(
        snap.json["cards"]
            .as_str()
            .unwrap()
            .contains(r#"data-queue="video""#)
    );
    let table = snap.json["table"].as_str().unwrap();
    assert!(
        table.contains(&other) && !table.contains(&failing[0]),
        "{table}"
    );
    assert_eq!(
        snap.json["user"],
        json!({"username": admin_name, "role": "admin"})
    );
    call(w, &admin, "GET", "/dashboard/snapshot?status=bogus", None)
        .await
        .expect_error(400, Some("invalid_filter"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_groups_requeue_once_and_buttons_follow_roles_embedded() {
    let w = deployment(Opts::new()).await;
    failed_groups_and_roles(&w, "admin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_groups_requeue_once_and_buttons_follow_roles_on_aws() {
    let aws = Provisioned::new();
    // `warren provision` made the first admin; make one whose password we know.
    let out = std::process::Command::new(warren_bin())
        .args(["users", "create", "--username", "boss", "--role", "admin"])
        .args(["--backend", "aws", "--table", &aws.table])
        .env("WARREN_USER_PASSWORD", ADMIN_PASSWORD)
        .output()
        .expect("run warren users create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = deployment(aws.dev()).await;
    failed_groups_and_roles(&w, "boss").await;
}
