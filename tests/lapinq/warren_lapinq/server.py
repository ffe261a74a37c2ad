"""Stands in for `lapinq.server` while lapinq's tests run against warren.

`create_app(...)` builds lapinq's Starlette app in lapinq; here it starts a
`warren dev` configured the same way and returns a handle on it, which the
stand-in `httpx.ASGITransport` (see transport.py) sends requests to. The
mapping of lapinq's `create_app` parameters to warren's options:

| lapinq `create_app`           | `warren dev`                                                |
|-------------------------------|-------------------------------------------------------------|
| `worker=False` (the default)  | `--no-worker`: tasks stay as they are enqueued              |
| `worker=True`                 | the in-process worker runs the tasks (built-in handlers)    |
| `api_key="k"`                 | `--api-key k`                                               |
| `rate_limit=n` (n > 0)        | `--rate-limit n` (else `WARREN_RATE_LIMIT=n` in its env)    |
| CORS: always on in lapinq, origins from `LAPINQ_CORS_ORIGINS`, default `*` | `--cors-origin <origins>` (else `WARREN_CORS_ORIGIN`), for apps with an API key |
| `database_url`, `session_secret`, `worker_*`, `cleanup_interval`, `scheduler*` | not used (a fresh data dir per app) |

CORS goes only to warrens with an API key: without one, warren refuses
cross-site requests by design (its loopback guard), and no lapinq test sends
an `Origin` to an app without a key.
"""

from __future__ import annotations

import os
from typing import Any

from .warren import Instance, current


class _State:
    """`app.state`: assigning `app.state.storage` points that storage at this app's warren."""

    def __init__(self, app: WarrenApp) -> None:
        object.__setattr__(self, "_app", app)
        object.__setattr__(self, "_storage", None)

    @property
    def storage(self) -> Any:
        return self._storage

    @storage.setter
    def storage(self, storage: Any) -> None:
        storage.bind(self._app)
        object.__setattr__(self, "_storage", storage)


class WarrenApp:
    """A lapinq app, served by a `warren dev` of its own."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.instance: Instance = current().start(config)
        self.state = _State(self)

    @property
    def url(self) -> str:
        return self.instance.url

    @property
    def api_key(self) -> str | None:
        return self.config.get("api_key")


def create_app(
    database_url: str = "postgresql://localhost:5432/lapinq",
    api_key: str | None = None,
    session_secret: str | None = None,
    rate_limit: int = 0,
    worker: bool = False,
    worker_concurrency: int = 4,
    worker_poll_interval: float = 0.1,
    worker_timeout: int = 300,
    cleanup_interval: float = 0,
    scheduler: bool = False,
    scheduler_interval: int = 60,
    **_: Any,
) -> WarrenApp:
    config: dict[str, Any] = {
        "worker": bool(worker),
        "api_key": api_key,
        "rate_limit": int(rate_limit or 0),
        "cors_origin": None,
    }
    if api_key is not None:
        config["cors_origin"] = os.environ.get("LAPINQ_CORS_ORIGINS", "*")
    return WarrenApp(config)


def _make_session_token(secret: str, user_id: str, username: str, role: str) -> str:
    """lapinq's dashboard session cookie: warren has no dashboard (those tests are left out)."""
    raise NotImplementedError("warren has no dashboard sessions: the dashboard tests are left out")
