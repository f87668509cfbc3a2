"""Exactly once under lost acknowledgements and network partitions, with real node processes.

A fault proxy of ours (tests/faultproxy.py) sits between a node and PostgreSQL and loses the
replies to COMMIT, black-holes the link, or cuts it on and off. Every test then checks the same
things: each job completed once with its own result, no effect recorded twice in any stream
(tests/runtime/network_faults.py, `duplicate_effects`), `verify` and `audit --all` clean.

`pytest -k "partition or lost_ack"` runs exactly these. CI runs short versions; the long ones
(the issue's sizes) run with MIRROR_NEURON_FAULT_TESTS=long: 500 jobs with lost
acknowledgements, 50 jobs under a link flapping for a minute.

Postgres only: SQLite has no network between a node and its database, so there is no link to
cut and no acknowledgement to lose.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.network_faults import (
    assert_exactly_once,
    commands_of,
    incarnation_of,
    job_streams,
    proxied_url,
    read,
    start_proxy,
    submit_all,
    wait_terminal,
)
from tests.runtime.processes import NodeProcess, wait_for

LONG = os.environ.get("MIRROR_NEURON_FAULT_TESTS") == "long"
SQLITE_HAS_NO_NETWORK = "SQLite has no network between a node and its database: nothing to partition, no ack to lose"


@pytest.fixture
def postgres_url(database_url: str, db: Any) -> str:
    """The test database (emptied by `db`), on Postgres only."""
    if database_url.startswith("sqlite"):
        pytest.skip(SQLITE_HAS_NO_NETWORK)
    return database_url


def test_lost_ack_on_5_percent_of_commits(postgres_url: str, tmp_path: Path) -> None:
    """Lost acknowledgements at random on 5 % of commits while jobs run (and are submitted)."""
    count = 500 if LONG else 60
    proxy = start_proxy(postgres_url, seed=21)
    node = NodeProcess(
        "node-a", proxied_url(postgres_url, proxy), tmp_path, MIRROR_NEURON_EXECUTOR_MAX_CONCURRENCY="8"
    ).start()
    try:
        proxy.lose_commit_acks(0.05)
        submitted = submit_all(node, count)
        wait_terminal(postgres_url, list(submitted), timeout=120 + count)
        proxy.lose_commit_acks(0)
        assert proxy.counters.acks_lost > 0, proxy.counters  # the fault did happen
        assert_exactly_once(postgres_url, submitted, node.url)
        assert node.process is not None and node.process.poll() is None, node.log()
    finally:
        node.stop()
        proxy.stop()


def _recovered_by(database_url: str, job_ids: list[str], node: str) -> bool:
    streams = read(database_url, lambda db: job_streams(db, job_ids))
    return all(
        any(e["type"] == "job_recovery_started" and e["payload"]["node"] == node for e in stream)
        for stream in streams.values()
    )


def _executors_running(database_url: str, job_ids: list[str]) -> bool:
    streams = read(database_url, lambda db: job_streams(db, job_ids))
    return all(any(e["type"] == "executor_lease_acquired" for e in stream) for stream in streams.values())


def test_partition_owner_cut_off_longer_than_the_lease_ttl(postgres_url: str, tmp_path: Path) -> None:
    """The owner loses Postgres while its executors run: another node takes over; the cut-off node
    commits nothing after the take-over, and once the link heals it finds itself declared lost and exits."""
    proxy = start_proxy(postgres_url, seed=1)
    owner = NodeProcess("node-a", proxied_url(postgres_url, proxy), tmp_path).start()
    other: NodeProcess | None = None
    try:
        gate = tmp_path / "gate"  # the executors wait for it: none can finish before the take-over
        submitted = submit_all(owner, 4, gate=gate)
        wait_for(lambda: _executors_running(postgres_url, list(submitted)), 60, "the owner's executors to run")
        other = NodeProcess("node-b", postgres_url, tmp_path).start()
        incarnation = read(postgres_url, lambda db: incarnation_of(db, "node-a"))
        proxy.partition()
        wait_for(lambda: _recovered_by(postgres_url, list(submitted), "node-b"), 90, "node-b to take the jobs over")
        gate.touch()
        wait_terminal(postgres_url, list(submitted), timeout=90)
        proxy.heal()
        assert owner.process is not None
        code = owner.process.wait(timeout=60)  # self-fenced: declared lost while cut off
        assert code != 0 and "declared lost" in owner.log(), owner.log()
        streams = assert_exactly_once(postgres_url, submitted, other.url)
        committed = read(postgres_url, lambda db: commands_of(db, incarnation))
        assert committed, "the owner committed nothing at all: the test proved nothing"
        for job_id, stream in streams.items():
            taken = [e["position"] for e in stream if e["type"] == "job_recovery_started"]
            assert len(taken) == 1, job_id
            late = [c for c in committed if c[0] == job_id and c[1] > taken[0]]
            assert late == [], f"node-a committed after the take-over of {job_id}: {late}"
    finally:
        owner.kill()
        if other is not None:
            other.stop()
        proxy.stop()


def test_partition_flapping_link_under_running_jobs(postgres_url: str, tmp_path: Path) -> None:
    """The owner's link is cut and healed every few hundred milliseconds while its jobs run."""
    count, sleep_seconds, flapping_seconds = (50, 10, 60) if LONG else (12, 3, 8)
    env = {"MIRROR_NEURON_EXECUTOR_MAX_CONCURRENCY": str(count)}
    proxy = start_proxy(postgres_url, seed=2)
    flapping = NodeProcess("node-a", proxied_url(postgres_url, proxy), tmp_path, **env).start()
    other: NodeProcess | None = None
    try:
        submitted = submit_all(flapping, count, sleep_seconds=sleep_seconds)
        other = NodeProcess("node-b", postgres_url, tmp_path, **env).start()
        deadline = time.monotonic() + flapping_seconds
        while time.monotonic() < deadline:
            proxy.partition()
            time.sleep(0.3)
            proxy.cut()
            proxy.heal()
            time.sleep(0.3)
        wait_terminal(postgres_url, list(submitted), timeout=120)
        assert proxy.counters.cuts > 0 and proxy.counters.connections > 1, proxy.counters
        assert_exactly_once(postgres_url, submitted, other.url)
    finally:
        flapping.stop()
        if other is not None:
            other.stop()
        proxy.stop()
