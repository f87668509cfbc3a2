"""What an operator sees of real nodes (SPEC C.3, C.5.8, C.5.10, C.5.11), on both databases.

One `serve` (API only) and `worker` processes with operations listeners and JSON logs run the
§13 example scenarios; both are scraped with prometheus_client's parser and what the metrics say
is held against what the API says. Then the owner of a running job is killed (-9) and another
worker recovers it, and the survivors shut down gracefully: the logs must tell that story, line
by line, in JSON, without the token or the database password.
"""

from __future__ import annotations

import shutil
import threading
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from app.domain import events as ev
from tests.ops.nodes import OpsNode, value
from tests.runtime.processes import ROOT, slow_prime_bundles, wait_for

TOKEN = f"tok-{uuid.uuid4().hex}"
PASSWORD = f"pw-{uuid.uuid4().hex}"
SCENARIOS = {
    "research_flow_v1": "completed",
    "prime_sweep_4_workers": "completed",
    "shell_python_chain_v1": "completed",
    "shell_python_chain_fail_exit_v1": "failed",
    "shell_python_chain_fail_pool_v1": "failed",
    "shell_python_chain_fail_timeout_v1": "failed",
    "streaming_peak_demo_v1": "completed",
}
FAMILIES = {
    "mirror_neuron_jobs": {"status"},
    "mirror_neuron_events_appended": {"stream", "type"},
    "mirror_neuron_write_transactions": set(),
    "mirror_neuron_write_seconds": set(),
    "mirror_neuron_write_batch_commands": set(),
    "mirror_neuron_http_requests": {"method", "route", "status"},
    "mirror_neuron_http_request_seconds": {"method", "route"},
    "mirror_neuron_jobs_queued": set(),
    "mirror_neuron_runners_active": set(),
    "mirror_neuron_lease_renewals": set(),
    "mirror_neuron_leases_lost": set(),
    "mirror_neuron_recoveries_started": {"cause"},
    "mirror_neuron_nodes_lost": set(),
    "mirror_neuron_executor_pool_capacity": {"pool"},
    "mirror_neuron_executor_pool_in_use": {"pool"},
    "mirror_neuron_executor_pool_waiting": {"pool"},
    "mirror_neuron_executor_attempts": {"outcome"},
    "mirror_neuron_executor_attempt_seconds": set(),
    "mirror_neuron_db_pool_in_use": set(),
    "mirror_neuron_followers": {"feed"},
}


def _bundles(target: Path) -> Path:
    """The example bundles, plus a copy of the prime sweep whose workers sleep (`prime_sweep_slow`)."""
    for name in ("research_flow", "prime_sweep_4_workers", "shell_python_chain", "shell_python_chain_fail_exit",
                 "shell_python_chain_fail_pool", "shell_python_chain_fail_timeout", "streaming_peak_demo"):
        shutil.copytree(ROOT / "examples" / name, target / name)
    slow = slow_prime_bundles(target / "slow", 3) / "prime_sweep_4_workers"
    manifest = (slow / "manifest.json").read_text().replace('"prime_sweep_4_workers"', '"prime_sweep_slow"', 1)
    (slow / "manifest.json").write_text(manifest)
    shutil.move(slow, target / "prime_sweep_slow")
    shutil.rmtree(target / "slow")
    return target


def _with_password(url: str) -> str:
    """The same Postgres URL with a password in it (trust authentication ignores it)."""
    return url.replace("postgres@", f"postgres:{PASSWORD}@", 1) if "postgres@" in url else url


def _job(node: OpsNode, job_id: str) -> dict[str, Any]:
    status, body, _ = node.call("GET", f"/api/v1/jobs/{job_id}")
    assert status == 200, body
    return dict(body["job"])


def _events(node: OpsNode, job_id: str) -> list[dict[str, Any]]:
    status, body, _ = node.call("GET", f"/api/v1/jobs/{job_id}/events")
    assert status == 200, body
    return list(body["data"])


def _submit(node: OpsNode, bundle_id: str, request_id: str | None = None) -> str:
    headers = {} if request_id is None else {"X-Request-ID": request_id}
    status, body, answer_headers = node.call("POST", "/api/v1/jobs", {"bundle_id": bundle_id}, headers)
    assert status == 201, body
    assert answer_headers.get("x-request-id") == (request_id or answer_headers.get("x-request-id"))
    return str(body["job_id"])


def _lines(nodes: list[OpsNode], logger: str, text: str, **fields: str) -> list[dict[str, Any]]:
    return [
        line for node in nodes for line in node.log_lines()
        if line["logger"] == logger and text in line["msg"] and all(line.get(k) == v for k, v in fields.items())
    ]


def _follow_global_feed(node: OpsNode, opened: threading.Event, stop: threading.Event) -> None:
    request = urllib.request.Request(
        f"{node.url}/api/v1/events?follow=true",
        headers={"Accept": "application/x-ndjson", "Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.readline()
        opened.set()
        stop.wait(30)


def _check_scenario_metrics(api: OpsNode, worker: OpsNode, jobs: dict[str, str]) -> None:
    scraped = {node.name: node.scrape() for node in (api, worker)}
    for families in scraped.values():
        for name, labels in FAMILIES.items():
            assert name in families, name
            for sample in families[name].samples:
                assert set(sample.labels) - {"le"} == labels, (name, sample)  # `le`: histogram buckets
    # Jobs by status: the projection, the same on every node, equal to the summary's counts.
    status, summary, _ = api.call("GET", "/api/v1/system/summary")
    assert status == 200
    for families in scraped.values():
        assert {s: value(families, "mirror_neuron_jobs", status=s) for s in ev.ALL_STATUSES} == summary["job_counts"]
        assert value(families, "mirror_neuron_jobs_queued") == summary["job_counts"]["queued"]
    # Events appended by the two processes = the events the API lists, type by type.
    listed = Counter(
        e["type"] if e["type"] in ev.RESERVED_TYPES else "custom" for job_id in jobs for e in _events(api, job_id)
    )
    counted: Counter[str] = Counter()
    for families in scraped.values():
        for sample in families["mirror_neuron_events_appended"].samples:
            if sample.labels["stream"] == "job":
                counted[sample.labels["type"]] += int(sample.value)
    assert +counted == listed
    # Executor attempts on the worker = the sandbox runs the events record (each attempt ends in a
    # `sandbox_job_completed` or an `executor_attempt_failed` naming its sandbox).
    sandboxes = [
        e["payload"]["sandbox_name"] for job_id in jobs for e in _events(api, job_id)
        if e["type"] in (ev.SANDBOX_JOB_COMPLETED, ev.EXECUTOR_ATTEMPT_FAILED)
    ]
    w = scraped[worker.name]
    attempts = sum(value(w, "mirror_neuron_executor_attempts_total", outcome=o) for o in ("succeeded", "failed", "timed_out"))
    assert attempts == len(sandboxes) > 0
    assert value(w, "mirror_neuron_executor_attempts_total", outcome="timed_out") == 2  # fail_timeout: 2 attempts
    assert value(w, "mirror_neuron_executor_attempt_seconds_count") == attempts
    assert value(w, "mirror_neuron_executor_pool_capacity", pool="default") == 4
    assert value(w, "mirror_neuron_executor_pool_in_use", pool="default") == 0
    assert value(w, "mirror_neuron_lease_renewals_total") > 0
    for families in scraped.values():
        assert value(families, "mirror_neuron_write_seconds_count") == value(
            families, "mirror_neuron_write_transactions_total"
        ) > 0
    # HTTP by route template: a job id never becomes a label.
    routes = {s.labels["route"] for s in scraped[api.name]["mirror_neuron_http_requests"].samples}
    assert {"/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/jobs/{job_id}/events"} <= routes, routes
    assert not any(job_id in route for job_id in jobs for route in routes)
    assert value(scraped[api.name], "mirror_neuron_http_requests_total", method="POST", route="/api/v1/jobs", status="201") == len(jobs)


def _check_followers(api: OpsNode) -> None:
    opened, stop = threading.Event(), threading.Event()
    follower = threading.Thread(target=_follow_global_feed, args=(api, opened, stop), daemon=True)
    follower.start()
    assert opened.wait(30)
    assert value(api.scrape(), "mirror_neuron_followers", feed="global") == 1
    stop.set()
    follower.join(30)
    wait_for(lambda: value(api.scrape(), "mirror_neuron_followers", feed="global") == 0, 30, "the follower to be gone")


def test_an_operator_sees_jobs_recoveries_and_shutdowns(database_url: str, db: Any, tmp_path: Path) -> None:
    url = _with_password(database_url)
    bundles = _bundles(tmp_path / "bundles")
    api = OpsNode(
        "serve", "ops-api", url, tmp_path, MIRROR_NEURON_RUNTIME_ENABLED="0", MIRROR_NEURON_API_TOKEN=TOKEN,
        MIRROR_NEURON_BUNDLES_DIR=str(bundles),
    ).start()
    first = OpsNode("worker", "ops-w1", url, tmp_path).start()
    second = None
    try:
        request_id = f"client-{uuid.uuid4().hex}"
        jobs = {_submit(api, bundle, request_id if i == 0 else None): bundle for i, bundle in enumerate(SCENARIOS)}
        for job_id, bundle in jobs.items():
            wait_for(lambda j=job_id: _job(api, j)["status"] in ("completed", "failed"), 120, f"{bundle} to end")
            assert _job(api, job_id)["status"] == SCENARIOS[bundle], _job(api, job_id)
        reasons = {
            job_id: e["payload"]["reason"] for job_id in jobs for e in _events(api, job_id) if e["type"] == ev.JOB_FAILED
        }
        wait_for(lambda: value(first.scrape(), "mirror_neuron_runners_active") == 0, 30, "the runners to finish")
        _check_scenario_metrics(api, first, jobs)
        _check_followers(api)

        # Recovery: the owner of a running job is killed; another worker takes it over.
        slow = _submit(api, "prime_sweep_slow")
        wait_for(lambda: any(e["type"] == ev.EXECUTOR_LEASE_ACQUIRED for e in _events(api, slow)), 60, "workers to run")
        assert _job(api, slow)["node"] == first.name
        first.kill()
        second = OpsNode("worker", "ops-w2", url, tmp_path).start()
        wait_for(lambda: _job(api, slow)["status"] == "completed", 120, "the recovered job to complete")
        recovered = value(second.scrape(), "mirror_neuron_recoveries_started_total", cause="lease_expired")
        assert recovered == 1
        assert second.stop() == 0
        assert api.stop() == 0
    finally:
        for node in (api, first, second):
            if node is not None:
                node.kill()

    nodes = [n for n in (api, first, second) if n is not None]
    for node in nodes:
        text = node.log_path.read_text()
        assert TOKEN not in text and PASSWORD not in text, node.name
        node.log_lines()  # every line is JSON
    # The client's request id: echoed (checked by _submit) and on the request's own lines.
    assert _lines([api], "mirror_neuron.access", "POST /api/v1/jobs 201", request_id=request_id)
    first_job = next(iter(jobs))
    assert _lines([api], "mirror_neuron.lifecycle", "job submitted", request_id=request_id, job_id=first_job)
    # Lifecycle lines with job_id and node: admitted, started, failed with its error, completed.
    for job_id, bundle in jobs.items():
        assert _lines(nodes, "mirror_neuron.lifecycle", "job admitted", job_id=job_id)
        if SCENARIOS[bundle] == "failed":
            failed = _lines([first], "mirror_neuron.lifecycle", "job failed: ", job_id=job_id, node=first.name)
            assert [line["msg"] for line in failed] == [f"job failed: {reasons[job_id]}"]
        else:
            assert _lines([first], "mirror_neuron.lifecycle", "job completed", job_id=job_id, node=first.name)
    # The recovery, with its cause; the lost node; the graceful shutdowns with their leases.
    assert second is not None
    assert _lines([second], "mirror_neuron.lifecycle", "cause lease_expired", job_id=slow, node=second.name)
    assert _lines([api, second], "mirror_neuron.lifecycle", f"node {first.name} declared lost")
    for node in (api, second):
        assert _lines([node], "app.runtime.node", f"node {node.name} shutting down: released", node=node.name)
        assert _lines([node], "mirror_neuron.lifecycle", f"node {node.name} stopped", node=node.name)
    # Nothing per agent step at INFO.
    assert not [line for n in nodes for line in n.log_lines() if "message_processed" in line["msg"]]
