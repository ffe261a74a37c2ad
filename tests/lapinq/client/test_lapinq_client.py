"""lapinq's own Python client (lapinq.client from the sdist, unmodified) against warren.

Not tests of lapinq's suite (those mock the client's HTTP calls): these point
lapinq's `TaskQueue`, `AsyncTaskQueue` and `TaskRef` at a real `warren dev`
with its worker on, and use them as a lapinq user would: enqueue, wait for the
result, batch-enqueue, read each result. lapinq's client sends the function's
name as `task_name`; warren runs built-in handlers by name, so the functions
are named after them (`echo`, `fail`).
"""

from __future__ import annotations

import json
import uuid

import httpx
from lapinq.client import AsyncTaskQueue, TaskQueue, TaskRef
from lapinq.server import create_app

MODULE = __name__


def test_client_enqueue_and_wait_for_result():
    app = create_app(worker=True)
    with TaskQueue(server_url=app.url, queue_name="client_q") as tq:

        @tq.task(name="echo")
        def echo(*args, **kwargs):
            return {"args": list(args), "kwargs": kwargs}

        ref = echo.queue(1, "two", k="v")
        assert ref.status_code == 201, ref.response.text
        uuid.UUID(ref.task_id)
        result = ref.wait(timeout=15, poll_interval=0.05)
        assert result["status"] == "completed"
        assert result["id"] == ref.task_id
        assert json.loads(result["result"]) == {"args": [1, "two"], "kwargs": {"k": "v"}}
        assert result.get("error") is None
        assert result["completed_at"]
        assert ref.status() == "completed"

        task = httpx.get(f"{app.url}/api/v1/tasks/{ref.task_id}").json()
        assert task["task_name"] == "echo"
        assert task["queue_name"] == "client_q"
        assert task["module_path"] == MODULE


def test_client_batch_enqueue_and_results():
    app = create_app(worker=True)
    with TaskQueue(server_url=app.url, queue_name="client_batch") as tq:
        tasks = [
            {"task_name": "echo", "queue_name": "client_batch", "module_path": MODULE, "args": [i], "max_retries": 0}
            for i in range(3)
        ]
        resp = tq.batch_enqueue(tasks)
        assert resp.status_code == 201, resp.text
        data = resp.json()
        assert data["count"] == 3
        assert len(data["task_ids"]) == 3
        for i, task_id in enumerate(data["task_ids"]):
            ref = TaskRef(httpx.Response(201, json={"task_id": task_id}), app.url, None)
            result = ref.wait(timeout=15, poll_interval=0.05)
            assert result["status"] == "completed"
            assert json.loads(result["result"]) == {"args": [i], "kwargs": {}}


def test_client_failed_task_result():
    app = create_app(worker=True)
    with TaskQueue(server_url=app.url) as tq:

        @tq.task(name="fail", max_retries=0)
        def fail(**kwargs):
            raise RuntimeError(kwargs.get("message"))

        ref = fail.queue(message="boom", retryable=False)
        assert ref.status_code == 201, ref.response.text
        result = ref.wait(timeout=15, poll_interval=0.05)
        assert result["status"] == "failed"
        assert "boom" in result["error"]
        assert result.get("result") is None


def test_client_ttl_zero_is_not_kept():
    app = create_app(worker=True)
    with TaskQueue(server_url=app.url, default_ttl_seconds=0) as tq:

        @tq.task(name="echo")
        def echo(*args, **kwargs):
            return None

        ref = echo.queue(1)
        assert ref.status_code == 201, ref.response.text
        assert ref.task_id is None
        assert ref.json() == {"task_id": None, "ttl_seconds": 0}


def test_client_with_api_key():
    app = create_app(api_key="client-key-7", worker=True)
    with TaskQueue(server_url=app.url, api_key="client-key-7") as tq:

        @tq.task(name="echo")
        def echo(*args, **kwargs):
            return None

        ref = echo.queue("x")
        assert ref.status_code == 201, ref.response.text
        result = ref.wait(timeout=15, poll_interval=0.05)
        assert result["status"] == "completed"
        assert json.loads(result["result"]) == {"args": ["x"], "kwargs": {}}

    with TaskQueue(server_url=app.url) as anonymous:

        @anonymous.task(name="echo")
        def echo2(*args, **kwargs):
            return None

        ref = echo2.queue("y")
        assert ref.status_code == 401
        assert ref.task_id is None


async def test_async_client_enqueue_batch_and_wait():
    app = create_app(worker=True)
    async with AsyncTaskQueue(server_url=app.url, queue_name="client_async") as atq:

        @atq.task(name="echo")
        async def echo(*args, **kwargs):
            return None

        ref = await echo.aqueue(5, k=6)
        assert ref.status_code == 201, ref.response.text
        result = await ref.awaitait(timeout=15, poll_interval=0.05)
        assert result["status"] == "completed"
        assert json.loads(result["result"]) == {"args": [5], "kwargs": {"k": 6}}

        resp = await atq.batch_enqueue(
            [{"task_name": "echo", "queue_name": "client_async", "module_path": MODULE, "args": [n]} for n in (7, 8)]
        )
        assert resp.status_code == 201, resp.text
        assert resp.json()["count"] == 2
        for n, task_id in zip((7, 8), resp.json()["task_ids"]):
            ref = TaskRef(httpx.Response(201, json={"task_id": task_id}), app.url, None, is_async=True)
            result = await ref.awaitait(timeout=15, poll_interval=0.05)
            assert result["status"] == "completed"
            assert json.loads(result["result"]) == {"args": [n], "kwargs": {}}
