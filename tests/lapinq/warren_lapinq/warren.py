"""Starting and stopping `warren dev` processes, and what each test saw.

Every lapinq test builds its own app (`create_app(...)`) on a database that
lapinq's conftest empties before each test. Here each app is a `warren dev` of
its own, started for that test in a fresh `--data-dir` with `--port 0`, and
stopped when the test ends, so every test starts from an empty store exactly
as lapinq's do.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

READY = re.compile(r"warren listening on http://(\S+)")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


class Session:
    """One pytest run: the binary (a private copy), the options it knows, a temp dir."""

    def __init__(self, binary: Path, log_dir: Path) -> None:
        self.source_binary = binary
        self.tmp = Path(tempfile.mkdtemp(prefix="lapinq-warren-"))
        # A private copy: a rebuild of target/debug/warren during the run
        # does not change the binary under test half-way.
        self.binary = self.tmp / "warren"
        shutil.copy2(binary, self.binary)
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        help_text = subprocess.run(
            [str(self.binary), "dev", "--help"], capture_output=True, text=True, timeout=30
        ).stdout
        self.options = set(re.findall(r"(--[a-z][a-z0-9-]*)", help_text))
        version = subprocess.run(
            [str(self.binary), "--version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
        digest = hashlib.sha256(self.binary.read_bytes()).hexdigest()
        self.version = f"{version or 'warren'} (binary {binary}, sha256 {digest[:12]})"
        self.count = 0
        self.stopping: list[Instance] = []

    def reap(self, wait: float = 0.0) -> None:
        """Finish stopping the warrens told to stop; kill those still up after `wait` s."""
        deadline = time.monotonic() + wait
        for inst in list(self.stopping):
            remaining = max(0.0, deadline - time.monotonic())
            try:
                inst.proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                if wait == 0.0:
                    continue
                inst.proc.kill()
                inst.proc.wait()
            inst.cleanup()
            self.stopping.remove(inst)

    def knows(self, option: str) -> bool:
        return option in self.options

    def close(self) -> None:
        self.reap(wait=STOP_TIMEOUT)
        shutil.rmtree(self.tmp, ignore_errors=True)


@dataclasses.dataclass
class Exchange:
    """One HTTP request to warren and its answer, for failure reports."""

    via: str
    method: str
    url: str
    request_body: bytes
    status: int | None
    response_body: bytes
    error: str | None = None

    def render(self, limit: int = 600) -> str:
        def short(b: bytes) -> str:
            text = b.decode("utf-8", "replace")
            return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"

        line = f"[{self.via}] {self.method} {self.url}"
        if self.request_body:
            line += f"\n    body: {short(self.request_body)}"
        if self.error:
            line += f"\n    -> no answer: {self.error}"
        else:
            line += f"\n    -> {self.status} {short(self.response_body)}"
        return line


class TestContext:
    """What one test started and sent: warren processes and HTTP exchanges."""

    def __init__(self, session: Session, nodeid: str) -> None:
        self.session = session
        self.nodeid = nodeid
        self.instances: list[Instance] = []
        self.exchanges: list[Exchange] = []
        self.notes: list[str] = []

    def start(self, config: dict[str, Any]) -> Instance:
        inst = Instance(self, config)
        self.instances.append(inst)
        return inst

    def close(self) -> None:
        # SIGTERM now; the session reaps them (a graceful stop of a warren
        # whose worker runs takes about a second, which the next tests need
        # not wait for).
        for inst in self.instances:
            inst.stop(wait=False)
        self.session.reap()

    def report(self) -> str:
        parts = []
        for inst in self.instances:
            parts.append(inst.describe())
        parts.extend(self.notes)
        if self.exchanges:
            parts.append("HTTP exchanges with warren, in order:")
            # Polls repeat the same exchange: one line per run of them.
            runs: list[tuple[str, int]] = []
            for e in self.exchanges:
                text = e.render()
                if runs and runs[-1][0] == text:
                    runs[-1] = (text, runs[-1][1] + 1)
                else:
                    runs.append((text, 1))
            parts.extend(text if n == 1 else f"{text}\n    (the same {n} times)" for text, n in runs)
        return "\n".join(parts)


class Instance:
    """One running `warren dev`."""

    def __init__(self, ctx: TestContext, config: dict[str, Any]) -> None:
        session = ctx.session
        session.count += 1
        self.ctx = ctx
        self.config = config
        self.data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=session.tmp))
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", ctx.nodeid)[-120:]
        self.log_path = session.log_dir / f"{session.count:03d}-{safe}.log"
        self.args, self.env, self.unsupported = self._command(config)
        self.stdout_path = self.data_dir.parent / f"{self.data_dir.name}.stdout"
        self._stdout = open(self.stdout_path, "wb")
        self._log = open(self.log_path, "wb")
        self._log.write(("$ " + " ".join(self.args) + "\n").encode())
        extra_env = {k: v for k, v in self.env.items() if k.startswith(("WARREN_", "LAPINQ_"))}
        if extra_env:
            self._log.write(f"env: {json.dumps(extra_env)}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            self.args,
            stdout=self._stdout,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            env=self.env,
        )
        self.addr = self._wait_ready()
        host, _, port = self.addr.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.url = f"http://{self.addr}"

    def _command(self, config: dict[str, Any]) -> tuple[list[str], dict[str, str], list[str]]:
        session = self.ctx.session
        args = [str(session.binary), "dev", "--host", "127.0.0.1", "--port", "0",
                "--data-dir", str(self.data_dir)]
        # The caller's WARREN_* / LAPINQ_* settings must not change what is
        # tested: only what the test's configuration says reaches warren.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WARREN_", "LAPINQ_"))}
        unsupported: list[str] = []
        if not config.get("worker"):
            args.append("--no-worker")
        if config.get("api_key") is not None:
            args += ["--api-key", config["api_key"]]
        elif session.knows("--open"):
            # lapinq without a key serves an open API: so does warren, on loopback.
            args.append("--open")

        def option(flag: str, env_name: str, value: str) -> None:
            # An option this binary does not list yet goes in through its
            # environment variable: warren starts, and the test shows how it
            # behaves without the feature.
            if session.knows(flag):
                args.extend([flag, value])
            else:
                env[env_name] = value
                unsupported.append(f"`warren dev --help` lists no {flag}; started with {env_name}={value} in its environment instead")

        if config.get("rate_limit"):
            option("--rate-limit", "WARREN_RATE_LIMIT", str(config["rate_limit"]))
        if config.get("cors_origin"):
            option("--cors-origin", "WARREN_CORS_ORIGIN", config["cors_origin"])
        return args, env, unsupported

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            text = self.stdout_path.read_text(errors="replace")
            m = READY.search(text)
            if m:
                return m.group(1)
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        code = self.proc.poll()
        self.stop()
        log_tail = self.log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(
            f"warren dev did not start ({'exit ' + str(code) if code is not None else 'no ready line in ' + str(START_TIMEOUT) + ' s'}):\n"
            f"{log_tail}"
        )

    def describe(self) -> str:
        cfg = {k: v for k, v in self.config.items() if v not in (None, False, 0)}
        lines = [f"warren dev for create_app({', '.join(f'{k}={v!r}' for k, v in cfg.items())}): "
                 f"{getattr(self, 'url', '?')} (log: {self.log_path})"]
        lines += [f"  note: {u}" for u in self.unsupported]
        return "\n".join(lines)

    def stop(self, wait: bool = True) -> None:
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            if not wait:
                self.ctx.session.stopping.append(self)
                return
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.cleanup()

    def cleanup(self) -> None:
        for f in (getattr(self, "_stdout", None), getattr(self, "_log", None)):
            if f is not None and not f.closed:
                f.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)


_current: TestContext | None = None


def set_current(ctx: TestContext | None) -> None:
    global _current
    _current = ctx


def current() -> TestContext:
    if _current is None:
        raise RuntimeError("no test is running: lapinq's app and storage exist only inside a test")
    return _current
