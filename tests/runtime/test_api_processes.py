"""MIRROR_NEURON_API_PROCESSES=N (SPEC C.5.13): N processes serve the API on one port, one node registers.

A real `mirror-neuron serve` with N=2 on each database and under each HTTP server: the extra process
is found as the first's child; requests are made on new connections while one process is frozen
(SIGSTOP), so the kernel hands the connection to the other, and the process that accepted it is read
from /proc (the owner of the server side of the TCP connection) — the first and the extra process
each answer reads and writes; a job submitted through the extra process is run by the first
process's node; the node list holds one node; SIGTERM to the first ends both.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
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


def _socket_owners(pids: list[int]) -> dict[int, int]:
    """Socket inode → the pid (among `pids`) holding it open."""
    owners = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    owners[int(link[8:-1])] = pid
    return owners


def _acceptor(server_port: int, client_port: int, pids: list[int]) -> int | None:
    """The process holding the server side of the TCP connection from `client_port`, once accepted."""
    owners = _socket_owners(pids)
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], int(fields[9])
        if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == client_port:
            return owners.get(inode)
    return None


def _all_threads_stopped(pid: int) -> bool:
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            stat = (task / "stat").read_text()
            states.append(stat[stat.rindex(")") + 2])
    return bool(states) and all(state in "Tt" for state in states)


def _through(node: NodeProcess, other: int, pids: list[int], method: str, path: str, body: Any = None) -> tuple[int, Any, int]:
    """One request on a new connection while `other` is frozen (SIGSTOP), so that the remaining process
    accepts it; `other` is thawed as soon as the connection is accepted (it may hold a lock the request
    needs). Returns the status, the body and the pid that accepted the connection."""
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=60)
    os.kill(other, signal.SIGSTOP)
    try:
        # SIGSTOP is delivered asynchronously: connect once every thread of `other` is stopped
        # (Granian accepts in a thread of its own).
        wait_for(lambda: _all_threads_stopped(other), 30, f"process {other} to stop")
        conn.connect()
        client_port = conn.sock.getsockname()[1]
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        acceptor = wait_for(lambda: _acceptor(node.port, client_port, pids), 30, "the connection to be accepted")
    finally:
        os.kill(other, signal.SIGCONT)
    response = conn.getresponse()
    status, payload = response.status, json.loads(response.read() or b"null")
    conn.close()
    return status, payload, acceptor


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

        pids = [first, second]
        status, body, acceptor = _through(node, second, pids, "POST", "/api/v1/jobs", TRIVIAL)
        assert (status, acceptor) == (201, first), body
        via_first = body["job_id"]
        wait_for(lambda: _completed(node, via_first), 60, "the job submitted through the first process")

        # The extra process alone: it reads and writes.
        status, body, acceptor = _through(node, first, pids, "GET", f"/api/v1/jobs/{via_first}")
        assert (status, acceptor, body["job"]["status"]) == (200, second, "completed"), body
        status, body, acceptor = _through(node, first, pids, "POST", "/api/v1/jobs", TRIVIAL)
        assert (status, acceptor) == (201, second), body
        via_second = body["job_id"]
        status, nodes, acceptor = _through(node, first, pids, "GET", "/api/v1/nodes")
        assert (status, acceptor) == (200, second), nodes
        # The node (in the first process) runs what the extra process accepted.
        wait_for(lambda: _completed(node, via_second), 60, "the job submitted through the extra process")

        assert [n["name"] for n in nodes["data"]] == ["api-pair"], nodes
        status, nodes = node.request("GET", "/api/v1/nodes")
        assert [(n["name"], n["status"]) for n in nodes["data"]] == [("api-pair", "alive")], nodes
    finally:
        code = node.stop()
    assert code == 0, node.log()
    assert not _alive(second), "the extra API process outlived the first"
