"""What the ported tests use in place of lapinq's storage moves: a real run on
warren, watched through the REST API until the task reaches the state the
move would have put it in."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx

FINISHED = ("completed", "failed", "cancelled", "expired")
# A date no test lives to see: a task scheduled then stays pending on a
# warren whose worker runs.
FAR_FUTURE = "2099-01-01T00:00:00+00:00"


async def wait_task(
    client: httpx.AsyncClient,
    task_id: Any,
    until: Callable[[dict[str, Any]], bool] = lambda t: t.get("status") in FINISHED,
    timeout: float = 15,
    what: str = "finish",
) -> dict[str, Any]:
    """Poll GET /api/v1/tasks/{id} until `until(task)`; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    task: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = await client.get(f"/api/v1/tasks/{task_id}")
        if resp.status_code == 200:
            task = resp.json()
            if until(task):
                return task
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"task {task_id} did not {what} on warren within {timeout} s; last seen: {json.dumps(task)}"
    )
