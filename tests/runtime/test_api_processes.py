"""MIRROR_NEURON_API_PROCESSES=N (SPEC C.5.13): N processes serve the API on one port, one node registers.

A real `mirror-neuron serve` with N=2 on each database and under each HTTP server: the extra process is found as the first's
child; each process is shown to serve on its own by stopping the other (SIGSTOP: the kernel then
hands every new connection to the one still accepting); a job submitted through the extra process is
run by the first process's node; the node list holds one node; SIGTERM to the first ends both.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.processes import NodeProcess, wait_for

TRIVIAL = {
    "manifest_version": "1.0",
    "graph_id": "api_processes",
    "entrypoints": ["router"],
    "initial_inputs": {"router": [{"n": 1}]},
    "nodes": [
        {"node_id": "router", "agent_type": "router", "config": {"emit_type": "work"}},
        {"node_id": "sink", "agent_type": "aggregator", "config": {"complete_after": 1}},
    ],
    "edges": [{"from_node": "router", "to_node": "sink", "message_type": "work"}],
}


def _children(pid: int) -> list[int]:
    """Pids whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@contextmanager
def _stopped(pid: int) -> Iterator[None]:
    """The process frozen (SIGSTOP) for the block: it accepts no connection meanwhile."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _completed(node: NodeProcess, job_id: str) -> bool:
    status, body = node.request("GET", f"/api/v1/jobs/{job_id}")
    assert status == 200, body
    return bool(body["job"]["status"] == "completed")


@pytest.mark.parametrize("http_server", ["uvicorn", "granian"])
def test_two_api_processes_serve_one_port_and_one_node_registers(
    database_url: str, db: Any, tmp_path: Path, http_server: str
) -> None:
    # A long lease and heartbeat: the first process may stay frozen for a while without losing its node.
    node = NodeProcess(
        "api-pair", database_url, tmp_path, MIRROR_NEURON_API_PROCESSES="2", MIRROR_NEURON_HTTP_SERVER=http_server,
        MIRROR_NEURON_HEARTBEAT_SECONDS="10", MIRROR_NEURON_LEASE_TTL_SECONDS="60",
        MIRROR_NEURON_POLL_INTERVAL_MS="500",
    ).start()
    assert node.process is not None
    first = node.process.pid
    try:
        extra = wait_for(lambda: _children(first), 30, "the extra API process")
        assert len(extra) == 1, extra
        second = extra[0]

        with _stopped(second):  # the first process alone
            status, body = node.request("POST", "/api/v1/jobs", TRIVIAL)
            assert status == 201, body
            via_first = body["job_id"]
        wait_for(lambda: _completed(node, via_first), 60, "the job submitted through the first process")

        with _stopped(first):  # the extra process alone: it reads and writes
            status, body = node.request("GET", f"/api/v1/jobs/{via_first}")
            assert status == 200 and body["job"]["status"] == "completed", body
            status, body = node.request("POST", "/api/v1/jobs", TRIVIAL)
            assert status == 201, body
            via_second = body["job_id"]
            status, nodes = node.request("GET", "/api/v1/nodes")
            assert status == 200, nodes
        # The node (in the first process) runs what the extra process accepted.
        wait_for(lambda: _completed(node, via_second), 60, "the job submitted through the extra process")

        assert [n["name"] for n in nodes["data"]] == ["api-pair"], nodes
        status, nodes = node.request("GET", "/api/v1/nodes")
        assert [(n["name"], n["status"]) for n in nodes["data"]] == [("api-pair", "alive")], nodes
    finally:
        code = node.stop()
    assert code == 0, node.log()
    assert not _alive(second), "the extra API process outlived the first"
