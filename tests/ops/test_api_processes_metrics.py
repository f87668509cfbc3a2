"""`/metrics` of a node with MIRROR_NEURON_API_PROCESSES=2 counts the requests of both API processes.

A real `mirror-neuron serve` with two API processes and the operations listener, on each database and
under each HTTP server. Requests are made on new connections while one process is frozen, so the
other accepts them (read from /proc, as tests/runtime/test_api_processes.py does); the first
process's listener then shows every one of them. When the extra process is killed its counts stay,
its live gauges go; the shared metrics directory is gone once the node stops.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.ops.nodes import OpsNode, value
from tests.runtime.processes import ROOT, wait_for
from tests.runtime.test_api_processes import _alive, _children, _through

ROUTE = {"method": "GET", "route": "/api/v1/nodes"}


def _shared_dirs(node: OpsNode) -> list[Path]:
    return sorted(Path(node.env["MIRROR_NEURON_TEMP_DIR"]).glob("metrics-*"))


@pytest.mark.parametrize("http_server", ["uvicorn", "granian"])
def test_metrics_count_the_requests_of_every_api_process(
    database_url: str, db: Any, tmp_path: Path, http_server: str
) -> None:
    node = OpsNode(
        "serve", "metrics-pair", database_url, tmp_path, MIRROR_NEURON_API_PROCESSES="2",
        MIRROR_NEURON_HTTP_SERVER=http_server, MIRROR_NEURON_HEARTBEAT_SECONDS="10",
        MIRROR_NEURON_LEASE_TTL_SECONDS="60", MIRROR_NEURON_POLL_INTERVAL_MS="500",
    ).start()
    assert node.process is not None
    first = node.process.pid
    try:
        (second,) = wait_for(lambda: _children(first), 30, "the extra API process")
        pids = [first, second]
        served = {first: 0, second: 0}
        for frozen in (second, first, first, second, first):
            status, _, acceptor = _through(node, frozen, pids, "GET", "/api/v1/nodes")
            assert status == 200
            served[acceptor] += 1
        assert served == {first: 2, second: 3}
        families = node.scrape()
        assert value(families, "mirror_neuron_http_requests_total", status="200", **ROUTE) == 5
        assert value(families, "mirror_neuron_http_request_seconds_count", **ROUTE) == 5
        (shared,) = _shared_dirs(node)
        assert any(p.name.endswith(f"_{second}.db") for p in shared.iterdir())

        os.kill(second, signal.SIGKILL)
        wait_for(lambda: not _alive(second), 30, "the extra process to die")
        live_gauges = f"gauge_livesum_{second}.db"
        wait_for(lambda: live_gauges not in os.listdir(shared), 30, "the first process to reap the extra one")
        families = node.scrape()
        assert value(families, "mirror_neuron_http_requests_total", status="200", **ROUTE) == 5
        assert "process_resident_memory_bytes" in families and "mirror_neuron_jobs" in families
    finally:
        code = node.stop()
    assert code == 0, node.log()
    assert _shared_dirs(node) == []


def test_a_run_gets_its_own_metrics_directory_and_dead_runs_lose_theirs(tmp_path: Path) -> None:
    from app.config import Settings
    from app.http.serving import shared_metrics_dir

    assert shared_metrics_dir(Settings(temp_dir=tmp_path, api_processes=1)) is None
    dead = tmp_path / "metrics-999999999-left"  # above any pid_max: no such process
    living = tmp_path / f"metrics-{os.getppid()}-running"
    for directory in (dead, living):
        directory.mkdir()
    made = shared_metrics_dir(Settings(temp_dir=tmp_path, api_processes=2))
    assert made is not None and made.name.startswith(f"metrics-{os.getpid()}-")
    assert sorted(tmp_path.iterdir()) == sorted([living, made])


def test_values_in_files_leave_no_environment_to_the_commands_executors_run(tmp_path: Path) -> None:
    """In a fresh interpreter: after enable(dir) the process counts into files, exposition() reads
    them back, and PROMETHEUS_MULTIPROC_DIR is not left for child processes to inherit."""
    script = f"""
import os
from pathlib import Path
from app.ops import metrics
metrics.enable(Path({str(tmp_path)!r}))
assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
metrics.http_answered("GET", "/api/v1/nodes", 200, 0.01)
metrics.http_answered("GET", "/api/v1/nodes", 200, 0.02)
text = metrics.exposition().decode()
assert 'mirror_neuron_http_requests_total{{method="GET",route="/api/v1/nodes",status="200"}} 2.0' in text, text
print(sorted(p.name for p in Path({str(tmp_path)!r}).iterdir()))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    files = done.stdout.strip()
    assert "counter_" in files and "histogram_" in files and "gauge_livesum_" in files
