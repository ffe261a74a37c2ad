"""Stands in for `lapinq.storage` while lapinq's tests run against warren.

lapinq's tests read and write tasks through `Storage` (asyncpg on lapinq's
PostgreSQL tables) next to the HTTP API. warren's store is its own, so here
each `Storage` call that has a REST equivalent in lapinq's documented API is
made through warren's REST API, and its answer is turned back into what
lapinq's `Storage` returns:

| lapinq `Storage`                    | warren REST call                               |
|-------------------------------------|------------------------------------------------|
| `enqueue(name, queue, module, ...)` | `POST /api/v1/enqueue` → `UUID(task_id)` or None |
| `enqueue_batch(tasks)`              | `POST /api/v1/enqueue/batch` → the `task_ids`, as UUIDs |
| `get_task(id)`                      | `GET /api/v1/tasks/{id}` → the task, or None on 404 |
| `get_task_result(id)`               | `GET /api/v1/tasks/{id}/result`                 |
| `list_tasks(queue, status, name, limit)` | `GET /api/v1/tasks?queue=&status=&task_name=&limit=` |
| `list_failed_tasks(queue, limit)`   | `GET /api/v1/tasks/failed`                      |
| `update_progress(id, p, message)`   | `PATCH /api/v1/tasks/{id}/progress`             |
| `cancel_task(id)` / `requeue_task(id)` | `DELETE /api/v1/tasks/{id}` / `POST .../requeue` → True on 200, False on 404 |
| `queue_stats()`                     | `GET /api/v1/queues`                            |
| `delete_tasks(...)`                 | `DELETE /api/v1/tasks?...` → `deleted`          |

A call warren answers with anything else fails the test, naming the request
and the answer (lapinq's `Storage` has no such failure: the write is made).

The worker's moves (`claim_task`, `complete_task`, `fail_task`) and the
calls with no REST equivalent (`update_task_metadata`, the scheduler table
through `pool`, users) raise: the tests that use them are ported (a real run
on warren replaces the move) or left out.

A `Storage` reaches the warren of the app it is given to
(`app.state.storage = storage`); one used before that, in a storage-only
test, reaches a warren of its own, started like `create_app()`'s.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import httpx

from .transport import send_logged

SQL_SCHEMA = "-- lapinq's schema: not used against warren"


def json_dumps(obj: Any) -> str:
    return json.dumps(obj)


def json_loads(data: str | bytes) -> Any:
    return json.loads(data)


class NotOverHttp(RuntimeError):
    pass


class WarrenRefused(AssertionError):
    """warren answered a storage call's REST request with an unexpected status."""


class _LoggedTransport(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await send_logged(self._inner, request, "lapinq Storage → REST")

    async def aclose(self) -> None:
        await self._inner.aclose()


def _task(d: dict[str, Any]) -> dict[str, Any]:
    d = dict(d)
    if isinstance(d.get("id"), str):
        d["id"] = uuid.UUID(d["id"])
    return d


class Storage:
    def __init__(self, database_url: str | None = None) -> None:
        self._database_url = database_url
        self._app: Any = None
        self._client: httpx.AsyncClient | None = None

    @classmethod
    async def create(cls, database_url: str, max_size: int | None = None, max_retries: int = 5) -> Storage:
        return cls(database_url)

    # -- binding -----------------------------------------------------------

    def bind(self, app: Any) -> None:
        if self._app is not None and self._app is not app:
            raise RuntimeError("this Storage already reaches another warren")
        self._app = app

    def _http(self) -> httpx.AsyncClient:
        if self._app is None:
            from .server import create_app

            self._app = create_app(self._database_url or "")
        if self._client is None:
            headers = {}
            if self._app.api_key is not None:
                # lapinq's Storage is behind the API's auth; so is this one.
                headers["X-API-Key"] = self._app.api_key
            self._client = httpx.AsyncClient(
                transport=_LoggedTransport(), base_url=self._app.url, headers=headers, timeout=30
            )
        return self._client

    async def _call(self, method: str, path: str, ok: tuple[int, ...], what: str, **kw: Any) -> httpx.Response:
        resp = await self._http().request(method, path, **kw)
        if resp.status_code not in ok:
            sent = kw.get("json")
            raise WarrenRefused(
                f"lapinq Storage.{what} through warren's REST API: {method} {path}"
                + (f" {json.dumps(sent)}" if sent is not None else "")
                + f" answered {resp.status_code} {resp.text}; expected {' or '.join(map(str, ok))}"
            )
        return resp

    @property
    def pool(self) -> Any:
        raise NotOverHttp("lapinq's asyncpg pool: warren has no SQL tables (storage-only tests are left out)")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- tasks ---------------------------------------------------------------

    async def enqueue(
        self,
        task_name: str,
        queue_name: str,
        module_path: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        scheduled_at: Any = None,
        max_retries: int = 3,
        priority: int = 0,
        ttl_seconds: float | None = None,
        metadata: dict[str, Any] | None = None,
        retry_delay: float | None = None,
        retry_backoff: bool | None = None,
        webhook_url: str | None = None,
    ) -> uuid.UUID | None:
        body: dict[str, Any] = {
            "task_name": task_name,
            "queue_name": queue_name,
            "module_path": module_path,
            "args": args or [],
            "kwargs": kwargs or {},
            "max_retries": max_retries,
            "priority": priority,
        }
        if scheduled_at is not None:
            body["scheduled_at"] = scheduled_at.isoformat() if isinstance(scheduled_at, datetime) else scheduled_at
        for key, value in (
            ("ttl_seconds", ttl_seconds),
            ("metadata", metadata),
            ("retry_delay", retry_delay),
            ("retry_backoff", retry_backoff),
            ("webhook_url", webhook_url),
        ):
            if value is not None:
                body[key] = value
        resp = await self._call("POST", "/api/v1/enqueue", (201,), "enqueue", json=body)
        task_id = resp.json().get("task_id")
        return uuid.UUID(task_id) if task_id is not None else None

    async def enqueue_batch(self, tasks: list[dict[str, Any]]) -> list[uuid.UUID]:
        resp = await self._call("POST", "/api/v1/enqueue/batch", (201,), "enqueue_batch", json=tasks)
        # Whatever warren answers, as it answers it (a null stays None).
        return [uuid.UUID(i) if isinstance(i, str) else i for i in resp.json()["task_ids"]]

    async def get_task(self, task_id: uuid.UUID) -> dict[str, Any] | None:
        resp = await self._call("GET", f"/api/v1/tasks/{task_id}", (200, 404), "get_task")
        return None if resp.status_code == 404 else _task(resp.json())

    async def get_task_result(self, task_id: uuid.UUID) -> dict[str, Any] | None:
        resp = await self._call("GET", f"/api/v1/tasks/{task_id}/result", (200, 404), "get_task_result")
        return None if resp.status_code == 404 else resp.json()

    async def list_tasks(
        self,
        queue_name: str | None = None,
        status: str | None = None,
        task_name: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        for key, value in (("queue", queue_name), ("status", status), ("task_name", task_name)):
            if value:
                params[key] = value
        resp = await self._call("GET", "/api/v1/tasks", (200,), "list_tasks", params=params)
        return [_task(t) for t in resp.json()]

    async def list_failed_tasks(self, queue_name: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if queue_name:
            params["queue"] = queue_name
        resp = await self._call("GET", "/api/v1/tasks/failed", (200,), "list_failed_tasks", params=params)
        return [_task(t) for t in resp.json()]

    async def update_progress(self, task_id: uuid.UUID, progress: float, message: str | None = None) -> None:
        await self._call(
            "PATCH", f"/api/v1/tasks/{task_id}/progress", (200,), "update_progress",
            json={"progress": progress, "message": message},
        )

    async def cancel_task(self, task_id: uuid.UUID) -> bool:
        resp = await self._call("DELETE", f"/api/v1/tasks/{task_id}", (200, 404), "cancel_task")
        return resp.status_code == 200

    async def requeue_task(self, task_id: uuid.UUID) -> bool:
        resp = await self._call("POST", f"/api/v1/tasks/{task_id}/requeue", (200, 404), "requeue_task", json={})
        return resp.status_code == 200

    async def queue_stats(self) -> list[dict[str, Any]]:
        resp = await self._call("GET", "/api/v1/queues", (200,), "queue_stats")
        return resp.json()

    async def delete_tasks(
        self,
        queue_name: str | None = None,
        status: str | None = None,
        task_name: str | None = None,
        args_search: str | None = None,
        result_search: str | None = None,
        error_search: str | None = None,
    ) -> int:
        params = {
            k: v
            for k, v in (
                ("queue", queue_name), ("status", status), ("task_name", task_name),
                ("args", args_search), ("result", result_search), ("error", error_search),
            )
            if v
        }
        resp = await self._call("DELETE", "/api/v1/tasks", (200,), "delete_tasks", params=params)
        return int(resp.json()["deleted"])

    # -- no REST equivalent ----------------------------------------------------

    def _not_over_http(self, what: str) -> NotOverHttp:
        return NotOverHttp(
            f"lapinq Storage.{what} has no REST equivalent: tests that use it are ported "
            "(a real run on warren replaces the move) or left out"
        )

    async def claim_task(self, *a: Any, **kw: Any) -> Any:
        raise self._not_over_http("claim_task")

    async def complete_task(self, *a: Any, **kw: Any) -> Any:
        raise self._not_over_http("complete_task")

    async def fail_task(self, *a: Any, **kw: Any) -> Any:
        raise self._not_over_http("fail_task")

    async def update_task_metadata(self, *a: Any, **kw: Any) -> Any:
        raise self._not_over_http("update_task_metadata")

    async def heartbeat(self, *a: Any, **kw: Any) -> Any:
        raise self._not_over_http("heartbeat")

    async def recover_stale_tasks(self, *a: Any, **kw: Any) -> Any:
        raise self._not_over_http("recover_stale_tasks")

    async def cleanup_expired_tasks(self, *a: Any, **kw: Any) -> Any:
        raise self._not_over_http("cleanup_expired_tasks")
