"""Every test of lapinq 1.3.0's tests/test_server.py, tests/test_features_v2.py
and tests/test_integration.py, and what the warren run does with it.

- RUN: runs unmodified, from the verified sdist, against warren.
- PORTED: does not run as is; tests/lapinq/ported/ holds a port of it (same
  requests and assertions, the storage move replaced by a real run on warren),
  marked `@pytest.mark.ports("<this id>")`.
- LEFT_OUT: not a test of the REST API; the reason says why.

The plugin refuses to run if the sdist holds a test not listed here, or lists
one it does not hold, so the list and the run cannot drift apart.
"""

from __future__ import annotations

RUN = "run"
PORTED = "ported"
LEFT_OUT = "left out"

# Reasons for leaving a test out, by kind.
DASHBOARD = "dashboard"
PYTHON_ONLY = "python-only"
STORAGE_ONLY = "storage-only"

R_DASHBOARD = "lapinq's HTML dashboard (session cookie, WebSocket, HTML fragments); warren has no dashboard"
R_DASH_HTML = "HTML fragments for lapinq's dashboard (/api/v1/queues/html, /api/v1/tasks/html), not part of the task REST API"
R_DASH_PY = "calls lapinq's dashboard HTML helpers in-process; sends no request"
R_CREATE_APP = "only checks that lapinq's Python create_app() returns an object; sends no request"
R_CLIENT_MOCK = "lapinq's Python client with its HTTP call mocked (mock.patch); no request reaches a server (lapinq's client is tested against warren by tests/lapinq/client/)"
R_RETRY_ERROR = "lapinq's Python RetryError class; sends no request"
R_CRON = "lapinq's Python cron parser; sends no request"
R_SCHEDULER = "lapinq's periodic scheduler over its lapinq_scheduled_tasks SQL table (storage.pool); not part of the task REST API"
R_METADATA = "Storage.update_task_metadata (what a running lapinq task calls in-process); the REST API has no call that changes a task's metadata"

TESTS: dict[str, tuple[str, ...]] = {
    # ---- tests/test_server.py (39) ------------------------------------------
    "tests/test_server.py::test_health": (RUN,),
    "tests/test_server.py::test_get_task_result": (PORTED,),
    "tests/test_server.py::test_get_task_result_not_finished": (RUN,),
    "tests/test_server.py::test_enqueue_endpoint": (RUN,),
    "tests/test_server.py::test_enqueue_missing_task_name": (RUN,),
    "tests/test_server.py::test_list_tasks": (RUN,),
    "tests/test_server.py::test_get_task": (RUN,),
    "tests/test_server.py::test_get_task_not_found": (RUN,),
    "tests/test_server.py::test_invalid_uuid": (RUN,),
    "tests/test_server.py::test_cancel_task": (RUN,),
    "tests/test_server.py::test_cancel_nonexistent_task": (RUN,),
    "tests/test_server.py::test_queue_stats": (RUN,),
    "tests/test_server.py::test_dashboard_page": (LEFT_OUT, DASHBOARD, R_DASHBOARD),
    "tests/test_server.py::test_metrics_endpoint": (RUN,),
    "tests/test_server.py::test_auth_middleware_blocks_without_key": (RUN,),
    "tests/test_server.py::test_auth_middleware_allows_valid_key": (RUN,),
    "tests/test_server.py::test_auth_middleware_skips_health": (RUN,),
    "tests/test_server.py::test_auth_middleware_skips_dashboard": (LEFT_OUT, DASHBOARD, R_DASHBOARD),
    "tests/test_server.py::test_requeue_not_found": (RUN,),
    "tests/test_server.py::test_requeue_not_failed": (RUN,),
    "tests/test_server.py::test_auth_does_not_block_options": (RUN,),
    "tests/test_server.py::test_cors_preflight_with_auth": (RUN,),
    "tests/test_server.py::test_websocket_sends_stats_and_tasks": (LEFT_OUT, DASHBOARD, R_DASHBOARD),
    "tests/test_server.py::test_rate_limiting_blocks_excess": (RUN,),
    "tests/test_server.py::test_enqueue_with_scheduled_at": (RUN,),
    "tests/test_server.py::test_enqueue_invalid_scheduled_at": (RUN,),
    "tests/test_server.py::test_list_failed_tasks_endpoint": (PORTED,),
    "tests/test_server.py::test_create_app_with_worker_flag": (LEFT_OUT, PYTHON_ONLY, R_CREATE_APP),
    "tests/test_server.py::test_inline_worker_processes_through_server": (PORTED,),
    "tests/test_server.py::test_requeue_endpoint": (PORTED,),
    "tests/test_server.py::test_enqueue_with_ttl_seconds": (RUN,),
    "tests/test_server.py::test_enqueue_ttl_zero": (RUN,),
    "tests/test_server.py::test_enqueue_invalid_ttl": (RUN,),
    "tests/test_server.py::test_requeue_invalid_uuid": (RUN,),
    "tests/test_server.py::test_list_tasks_with_status": (PORTED,),
    "tests/test_server.py::test_list_failed_tasks_with_queue_filter": (PORTED,),
    "tests/test_server.py::test_websocket_queue_filter": (LEFT_OUT, DASHBOARD, R_DASHBOARD),
    "tests/test_server.py::test_metrics_with_multiple_queues": (RUN,),
    "tests/test_server.py::test_websocket_id_filter_partial": (LEFT_OUT, DASHBOARD, R_DASHBOARD),
    # ---- tests/test_features_v2.py (48) -------------------------------------
    "tests/test_features_v2.py::test_enqueue_with_metadata": (RUN,),
    "tests/test_features_v2.py::test_enqueue_default_metadata": (RUN,),
    "tests/test_features_v2.py::test_update_task_metadata": (LEFT_OUT, STORAGE_ONLY, R_METADATA),
    "tests/test_features_v2.py::test_enqueue_with_retry_delay": (PORTED,),
    "tests/test_features_v2.py::test_enqueue_with_retry_backoff_true": (PORTED,),
    "tests/test_features_v2.py::test_update_progress": (RUN,),
    "tests/test_features_v2.py::test_enqueue_with_webhook": (RUN,),
    "tests/test_features_v2.py::test_enqueue_batch": (RUN,),
    "tests/test_features_v2.py::test_enqueue_batch_with_ttl_zero": (RUN,),
    "tests/test_features_v2.py::test_task_queue_default_ttl": (LEFT_OUT, PYTHON_ONLY, R_CLIENT_MOCK),
    "tests/test_features_v2.py::test_default_ttl_applied_to_task": (LEFT_OUT, PYTHON_ONLY, R_CLIENT_MOCK),
    "tests/test_features_v2.py::test_explicit_ttl_overrides_default": (LEFT_OUT, PYTHON_ONLY, R_CLIENT_MOCK),
    "tests/test_features_v2.py::test_task_with_metadata": (LEFT_OUT, PYTHON_ONLY, R_CLIENT_MOCK),
    "tests/test_features_v2.py::test_task_without_metadata_omits_field": (LEFT_OUT, PYTHON_ONLY, R_CLIENT_MOCK),
    "tests/test_features_v2.py::test_task_with_retry_config": (LEFT_OUT, PYTHON_ONLY, R_CLIENT_MOCK),
    "tests/test_features_v2.py::test_task_with_webhook": (LEFT_OUT, PYTHON_ONLY, R_CLIENT_MOCK),
    "tests/test_features_v2.py::test_taskref_from_response": (LEFT_OUT, PYTHON_ONLY, R_CLIENT_MOCK),
    "tests/test_features_v2.py::test_taskref_task_id_none_on_ttl_zero": (LEFT_OUT, PYTHON_ONLY, R_CLIENT_MOCK),
    "tests/test_features_v2.py::test_taskref_wait_completed": (LEFT_OUT, PYTHON_ONLY, R_CLIENT_MOCK),
    "tests/test_features_v2.py::test_batch_enqueue_sync": (LEFT_OUT, PYTHON_ONLY, R_CLIENT_MOCK),
    "tests/test_features_v2.py::test_batch_enqueue_async": (LEFT_OUT, PYTHON_ONLY, R_CLIENT_MOCK),
    "tests/test_features_v2.py::test_async_taskref_awaitait": (LEFT_OUT, PYTHON_ONLY, R_CLIENT_MOCK),
    "tests/test_features_v2.py::test_async_task_with_metadata": (LEFT_OUT, PYTHON_ONLY, R_CLIENT_MOCK),
    "tests/test_features_v2.py::test_server_batch_enqueue": (RUN,),
    "tests/test_features_v2.py::test_server_batch_enqueue_invalid_body": (RUN,),
    "tests/test_features_v2.py::test_server_batch_enqueue_missing_task_name": (RUN,),
    "tests/test_features_v2.py::test_server_update_progress": (RUN,),
    "tests/test_features_v2.py::test_server_update_progress_invalid": (RUN,),
    "tests/test_features_v2.py::test_server_enqueue_with_metadata": (RUN,),
    "tests/test_features_v2.py::test_server_enqueue_invalid_metadata": (RUN,),
    "tests/test_features_v2.py::test_server_enqueue_with_retry_config": (RUN,),
    "tests/test_features_v2.py::test_server_enqueue_with_webhook": (RUN,),
    "tests/test_features_v2.py::test_retry_exception_default": (LEFT_OUT, PYTHON_ONLY, R_RETRY_ERROR),
    "tests/test_features_v2.py::test_retry_exception_custom": (LEFT_OUT, PYTHON_ONLY, R_RETRY_ERROR),
    "tests/test_features_v2.py::test_inline_worker_with_metadata_and_progress": (PORTED,),
    "tests/test_features_v2.py::test_batch_enqueue_e2e": (PORTED,),
    "tests/test_features_v2.py::test_inline_worker_retry_delay": (PORTED,),
    "tests/test_features_v2.py::TestCronParsing::test_cron_every_minute": (LEFT_OUT, PYTHON_ONLY, R_CRON),
    "tests/test_features_v2.py::TestCronParsing::test_cron_specific_hour": (LEFT_OUT, PYTHON_ONLY, R_CRON),
    "tests/test_features_v2.py::TestCronParsing::test_cron_range": (LEFT_OUT, PYTHON_ONLY, R_CRON),
    "tests/test_features_v2.py::TestCronParsing::test_cron_step": (LEFT_OUT, PYTHON_ONLY, R_CRON),
    "tests/test_features_v2.py::TestCronParsing::test_cron_list": (LEFT_OUT, PYTHON_ONLY, R_CRON),
    "tests/test_features_v2.py::TestCronParsing::test_cron_invalid": (LEFT_OUT, PYTHON_ONLY, R_CRON),
    "tests/test_features_v2.py::TestCronParsing::test_parse_cron_returns_sets": (LEFT_OUT, PYTHON_ONLY, R_CRON),
    "tests/test_features_v2.py::TestCronParsing::test_cron_weekday_mapping": (LEFT_OUT, PYTHON_ONLY, R_CRON),
    "tests/test_features_v2.py::test_scheduler_tick_enqueues_task": (LEFT_OUT, STORAGE_ONLY, R_SCHEDULER),
    "tests/test_features_v2.py::test_scheduler_skips_disabled": (LEFT_OUT, STORAGE_ONLY, R_SCHEDULER),
    "tests/test_features_v2.py::test_scheduler_start_stop": (LEFT_OUT, STORAGE_ONLY, R_SCHEDULER),
    # ---- tests/test_integration.py (15) -------------------------------------
    "tests/test_integration.py::test_full_flow_enqueue_and_server_storage": (RUN,),
    "tests/test_integration.py::test_full_flow_claim_and_complete": (PORTED,),
    "tests/test_integration.py::test_full_flow_client_to_server": (LEFT_OUT, PYTHON_ONLY, R_CLIENT_MOCK),
    "tests/test_integration.py::test_health_check_endpoint": (RUN,),
    # Documented departures (README.md, "lapinq compatibility"): ported with
    # warren's answer in place of lapinq's.
    "tests/test_integration.py::test_payload_too_large": (PORTED,),
    "tests/test_integration.py::test_missing_module_path": (PORTED,),
    "tests/test_integration.py::test_queues_html_with_data": (LEFT_OUT, DASHBOARD, R_DASH_HTML),
    "tests/test_integration.py::test_tasks_html_with_data": (LEFT_OUT, DASHBOARD, R_DASH_HTML),
    "tests/test_integration.py::test_dashboard_html_endpoint": (LEFT_OUT, DASHBOARD, R_DASH_HTML),
    "tests/test_integration.py::test_empty_queues_html": (LEFT_OUT, DASHBOARD, R_DASH_PY),
    "tests/test_integration.py::test_empty_tasks_html": (LEFT_OUT, DASHBOARD, R_DASH_PY),
    "tests/test_integration.py::test_tasks_html_unknown_status": (LEFT_OUT, DASHBOARD, R_DASH_PY),
    "tests/test_integration.py::test_tasks_html_args_str": (LEFT_OUT, DASHBOARD, R_DASH_PY),
    "tests/test_integration.py::test_tasks_html_long_result_truncated": (LEFT_OUT, DASHBOARD, R_DASH_PY),
    "tests/test_integration.py::test_dashboard_page_filters_present": (LEFT_OUT, DASHBOARD, R_DASH_PY),
}

FILES = ("tests/test_server.py", "tests/test_features_v2.py", "tests/test_integration.py")
