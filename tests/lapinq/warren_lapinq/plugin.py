"""pytest plugin: run lapinq's own tests against `warren dev` over HTTP.

Loaded with `-p warren_lapinq.plugin` and `--noconftest` (tests/lapinq/run
does both). It replaces lapinq's tests/conftest.py, whose two fixtures start
a PostgreSQL container and empty its task table before each test:

- `lapinq.server` and `lapinq.storage` are replaced (before any test module
  imports them) by warren_lapinq.server and warren_lapinq.storage: each
  `create_app(...)` starts a `warren dev` of its own for the running test,
  and `Storage` reads and writes through warren's REST API;
- `httpx.ASGITransport(app=...)` of such an app sends the test's requests to
  that warren over HTTP;
- every warren a test started is stopped when the test ends, and a test's
  next app starts on an empty data dir: the fresh state lapinq's
  `cleanup_db` gives.

The rest of lapinq (lapinq.client, lapinq.execute, ...) is the sdist's own
code. The test functions run byte for byte as the sdist ships them; the
manifest says which run, which are ported (tests/lapinq/ported/) and which
are left out, and why.

Environment: LAPINQ_COMPAT_SDIST (the unpacked sdist, required), WARREN_BIN
(default target/debug/warren of the repo), LAPINQ_COMPAT_LOGS (warren logs,
default target/lapinq/logs), LAPINQ_COMPAT_SUMMARY (a JSON summary to write).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from . import manifest

HERE = Path(__file__).resolve().parent
ADAPTER = HERE.parent  # tests/lapinq
REPO = ADAPTER.parent.parent
SDIST = Path(os.environ.get("LAPINQ_COMPAT_SDIST", "")).resolve() if os.environ.get("LAPINQ_COMPAT_SDIST") else None

UNMODIFIED = "run unmodified"
PORTED = "ported"
CLIENT = "lapinq client"


def _install_lapinq() -> None:
    if SDIST is None or not (SDIST / "python" / "lapinq" / "__init__.py").is_file():
        raise pytest.UsageError("LAPINQ_COMPAT_SDIST must name the unpacked lapinq sdist (tests/lapinq/run sets it)")
    from . import server, storage, transport

    sys.path.insert(0, str(SDIST / "python"))
    sys.modules["lapinq.server"] = server
    sys.modules["lapinq.storage"] = storage
    import lapinq  # the sdist's own package: client, execute, ...

    if not str(Path(lapinq.__file__).resolve()).startswith(str(SDIST)):
        raise pytest.UsageError(f"imported lapinq from {lapinq.__file__}, not from the sdist {SDIST}")
    lapinq.server = server  # type: ignore[attr-defined]
    lapinq.storage = storage  # type: ignore[attr-defined]
    transport.install()


_CONFIG: pytest.Config | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _CONFIG
    _CONFIG = config
    config.addinivalue_line("markers", "ports(test_id): a port of the lapinq test `test_id` (tests/lapinq/ported)")
    _install_lapinq()
    from .warren import Session

    binary = Path(os.environ.get("WARREN_BIN") or REPO / "target" / "debug" / "warren")
    if not binary.is_absolute():
        binary = REPO / binary
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise pytest.UsageError(f"no warren binary at {binary} (set WARREN_BIN, or build it: cargo build --bin warren)")
    logs = Path(os.environ.get("LAPINQ_COMPAT_LOGS") or REPO / "target" / "lapinq" / "logs")
    config._warren_session = Session(binary, logs)  # type: ignore[attr-defined]
    config._lapinq = {  # type: ignore[attr-defined]
        "kinds": {},
        "outcomes": {},
        "left_out": {},
        "lapinq_ids": {},
        "started": time.monotonic(),
    }


def pytest_unconfigure(config: pytest.Config) -> None:
    session = getattr(config, "_warren_session", None)
    if session is not None:
        session.close()


def _lapinq_id(item: pytest.Item) -> str | None:
    """`tests/test_server.py::test_health` for a test of the sdist, else None."""
    if SDIST is None:
        return None
    try:
        rel = Path(item.path).resolve().relative_to(SDIST)
    except ValueError:
        return None
    return str(rel) + "::" + item.nodeid.split("::", 1)[1]


def _kind(item: pytest.Item) -> str:
    if _lapinq_id(item) is not None:
        return UNMODIFIED
    if item.get_closest_marker("ports") is not None:
        return PORTED
    return CLIENT


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config._lapinq  # type: ignore[attr-defined]
    keep: list[pytest.Item] = []
    deselected: list[pytest.Item] = []
    seen: set[str] = set()
    files_seen: set[str] = set()
    ports: dict[str, list[str]] = {}
    problems: list[str] = []
    for item in items:
        test_id = _lapinq_id(item)
        if test_id is None:
            marker = item.get_closest_marker("ports")
            if marker is not None:
                ports.setdefault(marker.args[0], []).append(item.nodeid)
            elif not str(Path(item.path).resolve()).startswith(str(ADAPTER / "client")):
                problems.append(f"{item.nodeid}: neither a lapinq test, nor a port (@pytest.mark.ports), nor a client test")
            keep.append(item)
            continue
        seen.add(test_id)
        files_seen.add(test_id.split("::")[0])
        entry = manifest.TESTS.get(test_id)
        if entry is None:
            problems.append(f"{test_id}: in the sdist but not in tests/lapinq/warren_lapinq/manifest.py")
            deselected.append(item)
        elif entry[0] == manifest.RUN:
            keep.append(item)
        else:
            if entry[0] == manifest.LEFT_OUT:
                state["left_out"][test_id] = entry[1]
            deselected.append(item)
    for test_id, entry in manifest.TESTS.items():
        if test_id.split("::")[0] in files_seen and test_id not in seen:
            problems.append(f"{test_id}: in the manifest but not in the sdist")
        if entry[0] == manifest.PORTED and files_seen and len(ports.get(test_id, [])) != 1:
            problems.append(f"{test_id}: marked ported, but {len(ports.get(test_id, []))} tests port it")
    for test_id in ports:
        if manifest.TESTS.get(test_id, (None,))[0] != manifest.PORTED:
            problems.append(f"{ports[test_id]} port {test_id}, which the manifest does not mark ported")
    if problems:
        raise pytest.UsageError("the lapinq manifest and the tests disagree:\n  " + "\n  ".join(problems))
    for item in keep:
        state["kinds"][item.nodeid] = _kind(item)
        marker = item.get_closest_marker("ports")
        state["lapinq_ids"][item.nodeid] = _lapinq_id(item) or (marker.args[0] if marker else None)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
    items[:] = keep


def pytest_collection_finish(session: pytest.Session) -> None:
    # After every plugin's selection (-k, -m, ...): count what will run.
    state = session.config._lapinq  # type: ignore[attr-defined]
    selected = {item.nodeid for item in session.items}
    state["kinds"] = {n: k for n, k in state["kinds"].items() if n in selected}


@pytest.fixture(autouse=True)
def _warren_for_this_test(request: pytest.FixtureRequest):
    """What lapinq's conftest `cleanup_db` gave: each test starts on empty state."""
    from .warren import TestContext, set_current

    ctx = TestContext(request.config._warren_session, request.node.nodeid)  # type: ignore[attr-defined]
    request.node._warren_ctx = ctx
    set_current(ctx)
    try:
        yield ctx
    finally:
        set_current(None)
        ctx.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    ctx = getattr(item, "_warren_ctx", None)
    if report.failed and ctx is not None and report.when in ("setup", "call"):
        report.sections.append(("warren", ctx.report()))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    config = _CONFIG
    if config is None:
        return
    outcomes = config._lapinq["outcomes"]  # type: ignore[attr-defined]
    previous = outcomes.get(report.nodeid)
    if report.failed:
        outcomes[report.nodeid] = "failed"
    elif report.when == "call" and previous != "failed":
        outcomes[report.nodeid] = "skipped" if report.skipped else "passed"
    elif report.skipped and previous is None:
        outcomes[report.nodeid] = "skipped"


def summary(config: pytest.Config) -> dict:
    state = config._lapinq  # type: ignore[attr-defined]
    kinds: dict[str, str] = state["kinds"]
    outcomes: dict[str, str] = state["outcomes"]
    count_kinds = Counter(kinds.values())
    by_outcome = Counter(outcomes.get(n, "not run") for n in kinds)
    left_out = Counter(state["left_out"].values())
    failed = sorted(n for n in kinds if outcomes.get(n) == "failed")
    return {
        "lapinq": "1.3.0",
        "warren": config._warren_session.version,  # type: ignore[attr-defined]
        "run_unmodified": count_kinds.get(UNMODIFIED, 0),
        "ported": count_kinds.get(PORTED, 0),
        "client": count_kinds.get(CLIENT, 0),
        "passed": by_outcome.get("passed", 0),
        "failed": by_outcome.get("failed", 0),
        "skipped": by_outcome.get("skipped", 0),
        "not_run": by_outcome.get("not run", 0),
        "left_out": sum(left_out.values()),
        "left_out_by_reason": dict(sorted(left_out.items())),
        "failures": [{"test": n, "kind": kinds[n], "lapinq_test": state["lapinq_ids"].get(n)} for n in failed],
        "seconds": round(time.monotonic() - state["started"], 1),
    }


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    s = summary(config)
    out = os.environ.get("LAPINQ_COMPAT_SUMMARY")
    if out:
        Path(out).write_text(json.dumps(s, indent=2) + "\n")
    tr = terminalreporter
    tr.section("lapinq 1.3.0 against warren")
    tr.write_line(f"warren: {s['warren']}")
    tr.write_line(
        f"run unmodified: {s['run_unmodified']}, ported: {s['ported']}, lapinq client tests: {s['client']}"
    )
    tr.write_line(f"passed: {s['passed']}, failed: {s['failed']}" + (f", skipped: {s['skipped']}" if s["skipped"] else ""))
    reasons = ", ".join(f"{k}: {v}" for k, v in s["left_out_by_reason"].items())
    tr.write_line(f"left out: {s['left_out']} ({reasons})")
