"""The dashboard as a person uses it, in Chromium: signing in, the live
overview and its filters, failed-task groups, per-role buttons, the admin
page and a pipeline's step timeline. The selectors are the dashboard's
contract between these tests and functions/dashboard."""

from __future__ import annotations

import random
import re
import time

from playwright.sync_api import Page, expect

from conftest import SCREENSHOTS, Api, later, sign_in, unique

STATUSES = ("pending", "running", "completed", "failed", "cancelled", "expired")
ACTIONS = ("cancel", "requeue", "delete")


def rows(page: Page):
    return page.locator("table#tasks tbody tr[data-task-id]")


def row(page: Page, task_id: str):
    return page.locator(f'table#tasks tbody tr[data-task-id="{task_id}"]')


def task_field(page: Page, field: str):
    return page.locator(f'dl#task dd[data-field="{field}"]')


def action(page: Page, name: str):
    return page.locator(f'button[data-action="{name}"]')


def test_wrong_password_shows_invalid_credentials(page: Page, admin):
    username, _ = admin
    page.goto("/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "not-the-password-at-all")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator('p[role="alert"].error')).to_have_text("Invalid credentials")
    expect(page.locator("input[name=password]")).to_be_visible()


def test_first_admin_signs_in_and_lands_on_the_overview(page: Page, admin, base_url):
    username, password = admin
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=(/|%2F)$"))
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(base_url + "/")
    expect(page.locator("#cards")).to_be_attached()
    expect(page.locator("form#filters")).to_be_visible()
    expect(page.locator("table#tasks")).to_be_attached()
    expect(page.locator("#live")).to_have_attribute("data-mode", re.compile(r"^(ws|poll)$"))


def test_an_enqueued_task_appears_without_a_reload(page: Page, admin, login, api: Api):
    login(page, *admin)
    expect(page.locator("table#tasks")).to_be_attached()
    # Live over the WebSocket once it is up; a reload would lose this mark.
    expect(page.locator("#live")).to_have_attribute("data-mode", "ws")
    page.evaluate("window.__not_reloaded = true")
    queue = unique("live")
    task_id = api.enqueue("echo", queue, args=[1, 2], kwargs={"k": "v"})
    expect(row(page, task_id)).to_be_attached(timeout=3_000)
    expect(row(page, task_id).locator("td").first.locator("a")).to_have_attribute("href", f"/tasks/{task_id}")
    card = page.locator(f'#cards article.card[data-queue="{queue}"]')
    expect(card).to_be_attached(timeout=3_000)
    # The echo task completes; the row and the card follow, still no reload.
    expect(row(page, task_id)).to_have_attribute("data-status", "completed", timeout=5_000)
    expect(card.locator('[data-status="completed"] .count')).to_have_text("1", timeout=5_000)
    for status in STATUSES:
        expect(card.locator(f'[data-status="{status}"] .count')).to_be_attached()
    assert page.evaluate("window.__not_reloaded") is True


def test_filters_narrow_the_table(page: Page, admin, login, api: Api):
    qa, qb = unique("filter-a"), unique("filter-b")
    a_ids = [api.enqueue("echo", qa, args=[n]) for n in range(3)]
    b_done = api.enqueue("echo", qb)
    b_failed = api.enqueue("fail", qb, max_retries=0, kwargs={"message": "nope", "retryable": False})
    for task_id in a_ids + [b_done]:
        api.wait_status(task_id, "completed")
    api.wait_status(b_failed, "failed")

    login(page, *admin)
    filters = page.locator("form#filters")
    expect(filters).to_be_visible()
    # Each field has a label.
    for name in ("queue", "id", "status", "task_name", "args", "result", "error"):
        field = filters.locator(f'[name="{name}"]')
        expect(field).to_be_attached()
        label = field.get_attribute("aria-label") or page.evaluate(
            "f => f.labels && f.labels.length ? f.labels[0].textContent : ''", field.element_handle())
        assert label.strip(), f"filter {name} has no label"

    filters.locator('[name="queue"]').fill(qa)
    expect(rows(page)).to_have_count(len(a_ids))
    for task_id in a_ids:
        expect(row(page, task_id)).to_be_attached()

    filters.locator('[name="queue"]').fill(qb)
    expect(rows(page)).to_have_count(2)
    filters.locator('select[name="status"]').select_option("failed")
    expect(rows(page)).to_have_count(1)
    expect(row(page, b_failed)).to_have_attribute("data-status", "failed")

    filters.locator('select[name="status"]').select_option("")
    expect(rows(page)).to_have_count(2)
    filters.locator('[name="error"]').fill("nope")
    expect(rows(page)).to_have_count(1)
    expect(row(page, b_failed)).to_be_attached()


def test_a_failed_group_is_requeued(page: Page, admin, login, api: Api):
    # Letters no mask touches (no hex digits), numbers that are masked: the
    # two tasks make one group.
    word = "".join(random.choices("ghijklmnopqrstuvwxyz", k=10))
    queue = unique("failed")
    ids = [api.enqueue("fail", queue, max_retries=0,
                       kwargs={"message": f"quota exceeded for tenant {word} after {n} calls",
                               "retryable": False})
           for n in (17, 4242)]
    before = {task_id: api.wait_status(task_id, "failed") for task_id in ids}
    groups = api.get("/api/v1/tasks/failed/groups")["groups"]
    group = next(g for g in groups if word in g["pattern"])
    assert group["count"] == 2, group

    login(page, *admin, next_path="/failed")
    section = page.locator(f'section.group[data-fingerprint="{group["fingerprint"]}"]')
    expect(section).to_be_visible()
    expect(section.locator("code.pattern")).to_contain_text(word)
    expect(section.locator("code.pattern")).not_to_contain_text("4242")
    expect(section.locator(".count")).to_contain_text("2")
    button = section.locator('button[data-action="requeue-group"]')
    expect(button).to_have_text(re.compile(r"Requeue this group"))
    with page.expect_navigation():
        button.click()
    expect(page.locator('#flash[role="alert"]')).to_be_hidden()
    # Each left failed: pending again, then run again by the worker (and, a
    # `fail` task, failed once more: a later completion tells it ran).
    for task_id in ids:
        api.wait_task(task_id, lambda t, b=before[task_id]: t["status"] != "failed"
                      or t["completed_at"] != b["completed_at"])


def test_a_viewer_gets_no_destructive_button_and_the_api_refuses(page: Page, login, api: Api, make_user, base_url):
    viewer, password = make_user("viewer")
    queue = unique("viewer")
    task_id = api.enqueue("echo", queue, scheduled_at=later())

    login(page, viewer, password, next_path=f"/tasks/{task_id}")
    expect(page).to_have_url(f"{base_url}/tasks/{task_id}")
    expect(task_field(page, "status")).to_have_text("pending")
    for name in ACTIONS:
        expect(action(page, name)).to_have_count(0)
    # Nor the admin page (asked with the page's own session cookie).
    assert page.context.request.get("/admin").status == 403

    as_viewer = Api.login(base_url, viewer, password)
    status, answer = as_viewer.request("DELETE", f"/api/v1/tasks/{task_id}")
    assert status == 403, answer
    assert api.task(task_id)["status"] == "pending"


def test_an_admin_grants_cancel_on_one_queue(page: Page, admin, login, api: Api, base_url):
    username, password = unique("user"), "a-user-password-1234"
    granted, other = unique("granted"), unique("other")

    login(page, *admin, next_path="/admin")
    form = page.locator("form#new-user")
    form.locator('[name="username"]').fill(username)
    form.locator('[name="password"]').fill(password)
    form.locator('select[name="role"]').select_option("user")
    with page.expect_navigation():
        form.get_by_role("button", name="Create user").click()
    user_row = page.locator(f'table#users tr[data-user="{username}"]')
    expect(user_row).to_be_visible()
    grant = user_row.locator("form.permissions")
    grant.locator('input[name="queue"]').fill(granted)
    grant.locator('input[name="actions"][value="cancel"]').check()
    with page.expect_navigation():
        grant.get_by_role("button", name="Grant").click()
    made = next(u for u in api.get("/admin/users") if u["username"] == username)
    assert made["role"] == "user", made
    assert made["permissions"]["queues"] == {granted: ["cancel"]}, made

    mine = api.enqueue("echo", granted, scheduled_at=later())
    theirs = api.enqueue("echo", other, scheduled_at=later())
    page.context.clear_cookies()
    login(page, username, password, next_path=f"/tasks/{theirs}")
    expect(task_field(page, "status")).to_have_text("pending")
    for name in ACTIONS:
        expect(action(page, name)).to_have_count(0)

    page.goto(f"/tasks/{mine}")
    expect(task_field(page, "status")).to_have_text("pending")
    expect(action(page, "requeue")).to_have_count(0)
    expect(action(page, "delete")).to_have_count(0)
    with page.expect_navigation():
        action(page, "cancel").click()
    expect(task_field(page, "status")).to_have_text("cancelled")
    expect(page.locator('#flash[role="alert"]')).to_be_hidden()
    assert api.task(mine)["status"] == "cancelled"

    as_user = Api.login(base_url, username, password)
    status, answer = as_user.request("DELETE", f"/api/v1/tasks/{theirs}")
    assert status == 403, answer
    assert api.task(theirs)["status"] == "pending"


def test_an_execution_shows_its_step_timeline(page: Page, admin, login, api: Api):
    steps = [{"name": "check", "kind": "validate"},
             {"name": "shape", "kind": "transform", "expression": "{id: event.id}"}]
    pipeline = api.post("/api/v1/pipelines", {
        "name": unique("orders"),
        "event_schema": {"type": "object", "required": ["id"]},
        "steps": steps,
    }, expect=201)["id"]
    execution = api.post(f"/api/v1/pipelines/{pipeline}/run", {"id": 1}, expect=202)["execution_id"]
    deadline = time.monotonic() + 15
    while api.get(f"/api/v1/executions/{execution}")["status"] == "running":
        assert time.monotonic() < deadline, "the execution did not finish in 15 s"
        time.sleep(0.2)

    login(page, *admin, next_path="/pipelines")
    link = page.locator(f'a[href="/pipelines/{pipeline}"]')
    expect(link.first).to_be_visible()
    with page.expect_navigation():
        link.first.click()
    run = page.locator(f'table#executions tr[data-execution-id="{execution}"]')
    expect(run).to_be_visible()
    with page.expect_navigation():
        run.locator(f'a[href="/executions/{execution}"]').first.click()

    timeline = page.locator("ol#timeline li.step")
    expect(timeline).to_have_count(len(steps))
    for step in steps:
        item = page.locator(f'ol#timeline li.step[data-step="{step["name"]}"]')
        expect(item).to_have_attribute("data-status", "success")
        expect(item.locator("svg")).to_have_count(1)
        # The bar is drawn inside its frame, however short the step.
        box, bar = item.locator("svg").bounding_box(), item.locator("rect").bounding_box()
        assert bar["width"] > 0 and box["x"] <= bar["x"] and bar["x"] + bar["width"] <= box["x"] + box["width"] + 0.5
    assert api.get(f"/api/v1/executions/{execution}")["status"] == "success"



def test_a_phone_in_dark_mode_reads_the_overview(browser, base_url, admin, api: Api):
    task_id = api.enqueue("echo", unique("phone"), args=[1])
    context = browser.new_context(base_url=base_url, viewport={"width": 390, "height": 844},
                                  color_scheme="dark", is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        sign_in(page, *admin)
        expect(row(page, task_id)).to_be_attached()
        # Nothing but the table's own scroller is wider than the screen.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        # Dark background, light text.
        def luminance(css: str) -> float:
            r, g, b = (int(v) for v in re.findall(r"\d+", css)[:3])
            return 0.2126 * r + 0.7152 * g + 0.0722 * b
        body = page.evaluate("[getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color]")
        assert luminance(body[0]) < 60 < 160 < luminance(body[1]), body
        # The filters stay reachable by keyboard: Tab from the top reaches the first one.
        page.keyboard.press("Tab")
        for _ in range(12):
            if page.evaluate("document.activeElement.closest('form#filters') !== null"):
                break
            page.keyboard.press("Tab")
        else:
            raise AssertionError("Tab never reached the filters")
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "test_a_phone_in_dark_mode_reads_the_overview.png"), full_page=True)
        context.close()


SOCKET_SCRIPT = """async ([token, filter]) => {
    const ws = new WebSocket(location.origin.replace(/^http/, "ws") + "/ws");
    const seen = [];
    return await new Promise((done) => {
        const timer = setTimeout(() => done({timeout: true, seen}), 8000);
        ws.onopen = () => ws.send(JSON.stringify({type: "auth", token}));
        ws.onmessage = (m) => {
            const update = JSON.parse(m.data);
            seen.push({type: update.type, table: update.table});
            if (seen.length === 1 && filter) ws.send(JSON.stringify(filter));
            if (seen.length === 2) { clearTimeout(timer); ws.close(); done({seen}); }
        };
        ws.onclose = (e) => { clearTimeout(timer); done({code: e.code, seen}); };
    });
}"""


def test_the_socket_speaks_seed_001_and_refuses_a_bad_token(page: Page, admin, login, base_url, api: Api):
    # From a dashboard page: the socket checks its Origin, the page's CSP allows it.
    login(page, *admin, next_path="/failed")
    refused = page.evaluate(SOCKET_SCRIPT, ["not-a-session-token", None])
    assert refused.get("code") == 1008 and refused["seen"] == [], refused

    # A session token, as a client of seed 001 holds it, then a filter message.
    queue = unique("socket")
    task_id = api.enqueue("echo", queue)
    session = Api.login(base_url, *admin)
    token = next(c.value for c in session.cookies if c.name == "warren_session")
    answer = page.evaluate(SOCKET_SCRIPT, [token, {"queue": queue}])
    assert "code" not in answer and len(answer["seen"]) == 2, answer
    assert all(update["type"] == "update" for update in answer["seen"])
    assert task_id in answer["seen"][1]["table"]
    assert queue in answer["seen"][1]["table"] and answer["seen"][1]["table"].count("data-task-id=") == 1


def test_a_pipeline_s_earlier_version_stays_readable(page: Page, admin, login, api: Api):
    first = [{"name": "check", "kind": "validate", "schema": {"type": "object"}}]
    second = first + [{"name": "shape", "kind": "transform", "expression": "{id: event.id}"}]
    name = unique("versions")
    pipeline = api.post("/api/v1/pipelines", {"name": name, "steps": first}, expect=201)["id"]
    api.call("PUT", f"/api/v1/pipelines/{pipeline}", {"name": name, "steps": second}, expect=200)

    login(page, *admin, next_path=f"/pipelines/{pipeline}")
    versions = page.locator("#versions")
    expect(versions.locator('[aria-current="page"]')).to_have_text("2")
    expect(page.locator("ol.steps li")).to_have_count(2)
    with page.expect_navigation():
        versions.locator(f'a[href="/pipelines/{pipeline}?version=1"]').click()
    expect(versions.locator('[aria-current="page"]')).to_have_text("1")
    expect(page.locator("ol.steps li")).to_have_count(1)
    # A version that is not a number is refused, not guessed.
    answer = page.goto(f"/pipelines/{pipeline}?version=first")
    assert answer.status == 400
    expect(page.locator("p.error")).to_have_text("version is a whole number")
