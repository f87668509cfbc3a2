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
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.network_faults import (
    assert_exactly_once,
    proxied_url,
    start_proxy,
    submit_all,
    wait_terminal,
)
from tests.runtime.processes import NodeProcess

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
