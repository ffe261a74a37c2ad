"""The browser tests' harness: one `warren dev` for the whole session, on a
free loopback port and a fresh data dir, and Playwright driving Debian's
Chromium (/usr/bin/chromium; Playwright's own browser builds are never
downloaded). Every test leaves a screenshot of its last page in
target/screenshots/<test name>.png, passed or failed.

Run them with scripts/browser-test, which installs what they need.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
WARREN_BIN = Path(os.environ.get("WARREN_BIN", ROOT / "target/debug/warren"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# The network here is closed: without these Chromium stalls on its
# background fetches (updates, sync, field trials).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_PASSWORD = "browser-tests-admin-password"
SCREENSHOTS = ROOT / "target/screenshots"
LOGS = ROOT / "target/browser"
# Milliseconds a Playwright action or wait may take before the test fails:
# short, so that a page that is not there fails fast.
TIMEOUT_MS = 10_000


# -- warren ------------------------------------------------------------------


@dataclass
class Warren:
    base_url: str
    admin: str
    password: str
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _health(base_url: str) -> int | None:
    try:
        with urllib.request.urlopen(base_url + "/health", timeout=2) as answer:
            return answer.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


@pytest.fixture(scope="session")
def warren() -> Warren:
    """`warren dev` on a free loopback port with a fresh data dir, its
    first admin's password fixed; stopped at the end of the session."""
    if not WARREN_BIN.is_file():
        pytest.exit(f"no warren binary at {WARREN_BIN}: cargo build -p warren-cli --bin warren", 2)
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path = LOGS / "warren.log"
    data_dir = Path(tempfile.mkdtemp(prefix="warren-browser-"))
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    # warren alone decides its settings: none of the caller's WARREN_/LAPINQ_ variables.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARREN_", "LAPINQ_"))}
    env.update(WARREN_ADMIN_PASSWORD=ADMIN_PASSWORD, RUST_BACKTRACE="1", NO_COLOR="1")
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [str(WARREN_BIN), "dev", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(data_dir), "--rate-limit", "0"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        while _health(base_url) != 200:
            if proc.poll() is not None:
                raise RuntimeError(f"warren dev exited with {proc.returncode}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"warren dev answered no GET /health = 200 in 30 s; see {log_path}")
            time.sleep(0.1)
        found = re.search(r"created the first admin `([^`]+)`", log_path.read_text())
        if not found:
            raise RuntimeError(f"warren dev named no first admin; see {log_path}")
        yield Warren(base_url, found.group(1), ADMIN_PASSWORD, log_path)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    if "panicked" in log_path.read_text():
        pytest.fail(f"warren panicked during the browser tests; see {log_path}")


@pytest.fixture(scope="session")
def base_url(warren: Warren) -> str:
    return warren.base_url


@pytest.fixture(scope="session")
def admin(warren: Warren) -> tuple[str, str]:
    """The first admin's (username, password)."""
    return warren.admin, warren.password


# -- the API -----------------------------------------------------------------


class ApiError(AssertionError):
    pass


class Api:
    """A small JSON client of warren's API on urllib: as an API key
    (`X-API-Key`) or as a signed-in session (its cookie)."""

    def __init__(self, base_url: str, key: str | None = None):
        self.base_url = base_url
        self.key = key
        self.cookies = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect)

    @classmethod
    def login(cls, base_url: str, username: str, password: str) -> "Api":
        """Signed in with JSON `POST /login`: the session cookie is kept."""
        api = cls(base_url)
        api.call("POST", "/login", {"username": username, "password": password}, expect=200)
        return api

    def new_key(self, name: str = "t") -> "Api":
        """A client that presents a new API key of this caller's."""
        key = self.call("POST", "/api/v1/keys", {"name": name}, expect=201)["key"]
        assert key and key.startswith("wk_"), key
        return Api(self.base_url, key)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, the JSON answer or its text), whatever the status."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.key:
            headers["X-API-Key"] = self.key
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with self._opener.open(req, timeout=30) as answer:
                status, raw = answer.status, answer.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def call(self, method: str, path: str, body: Any = None, expect: int | tuple[int, ...] = (200, 201, 202)) -> Any:
        """The JSON answer; fails unless the status is `expect`."""
        status, answer = self.request(method, path, body)
        wanted = (expect,) if isinstance(expect, int) else expect
        if status not in wanted:
            raise ApiError(f"{method} {path} answered {status}, not {wanted}: {answer}")
        return answer

    def get(self, path: str, **kw: Any) -> Any:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.call("POST", path, {} if body is None else body, **kw)

    def enqueue(self, task_name: str, queue: str, **fields: Any) -> str:
        """Enqueue a task; its id."""
        return self.post("/api/v1/enqueue", {"task_name": task_name, "queue_name": queue, **fields},
                         expect=201)["task_id"]

    def task(self, task_id: str) -> dict:
        return self.get(f"/api/v1/tasks/{task_id}")

    def wait_task(self, task_id: str, done: Callable[[dict], bool], timeout: float = 15) -> dict:
        """The task once `done(task)` holds; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            task = self.task(task_id)
            if done(task):
                return task
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task_id} did not get there in {timeout} s: {task}")
            time.sleep(0.2)

    def wait_status(self, task_id: str, *statuses: str, timeout: float = 15) -> dict:
        return self.wait_task(task_id, lambda t: t["status"] in statuses, timeout)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.fixture(scope="session")
def api(warren: Warren) -> Api:
    """The first admin's API client: an API key made through its session."""
    return Api.login(warren.base_url, warren.admin, warren.password).new_key("browser-tests")


@pytest.fixture
def make_user(api: Api) -> Callable[..., tuple[str, str]]:
    """make_user(role, permissions=None) -> (username, password): a new
    user made over `POST /admin/users`, a fresh name each time."""

    def make(role: str, permissions: dict | None = None) -> tuple[str, str]:
        username = unique(role)
        password = f"pw-{uuid.uuid4().hex}"
        body: dict[str, Any] = {"username": username, "password": password, "role": role}
        if permissions is not None:
            body["permissions"] = permissions
        api.post("/admin/users", body, expect=201)
        return username, password

    return make


def unique(prefix: str) -> str:
    """A name no other test uses (queues, users, pipelines): the tests share
    one warren."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def later(seconds: int = 3600) -> str:
    """`scheduled_at` that keeps a task pending (so still cancellable) for
    the test's length, with the worker running."""
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


# -- the browser ---------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Browser:
    """Debian's Chromium, headless, launched by Playwright."""
    if not Path(CHROMIUM).exists():
        pytest.exit(f"no Chromium at {CHROMIUM}: scripts/browser-test installs Debian's", 2)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, base_url: str, request: pytest.FixtureRequest) -> Page:
    """A page of its own (own cookies) per test, relative URLs on warren;
    its screenshot is saved at the end of the test, passed or failed."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    # A confirm() before a destructive action is answered yes.
    page.on("dialog", lambda dialog: dialog.accept())
    yield page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    try:
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    except Exception as e:  # a crashed page must not hide the test's own failure
        print(f"browser-test: no screenshot of {name}: {e}")
    context.close()


def sign_in(page: Page, username: str, password: str, next_path: str = "/") -> None:
    """Sign in through the form of GET /login, then on to `next_path`."""
    page.goto(f"/login?next={urllib.request.quote(next_path)}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()


@pytest.fixture
def login() -> Callable[..., None]:
    """login(page, user, password, next_path="/")."""
    return sign_in
