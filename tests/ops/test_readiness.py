"""/readyz follows the database (SPEC C.5.10): 503 while it is unreachable, 200 once it is back.

Postgres only: SQLite is a file in the process, it cannot become unreachable. The outage is a
proxy in front of the shared server that the test cuts; the server itself is never stopped.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import PG_ADMIN_DSN, create_pg_database, drop_pg_database, migrate
from tests.ops.nodes import OpsNode
from tests.ops.proxy import proxy_to
from tests.runtime.processes import wait_for


@pytest.fixture
async def pg_database() -> AsyncIterator[str]:
    name, url = await create_pg_database("mn_ops")
    try:
        await migrate(url)
        yield name
    finally:
        await drop_pg_database(name)


def test_readyz_is_503_while_the_database_is_unreachable_and_200_after(pg_database: str, tmp_path: Path) -> None:
    server = urlsplit(PG_ADMIN_DSN)
    with proxy_to(server.hostname or "127.0.0.1", server.port or 5432) as proxy:
        url = f"postgresql+asyncpg://{server.username}@127.0.0.1:{proxy.port}/{pg_database}"
        node = OpsNode(
            "worker", "ops-ready", url, tmp_path,
            MIRROR_NEURON_LEASE_TTL_SECONDS="20", MIRROR_NEURON_HEARTBEAT_SECONDS="1",
        ).start()  # start() waits for /readyz 200
        try:
            proxy.cut()
            status, body = wait_for(lambda: (a := node.ops("/readyz"))[0] == 503 and a, 30, "readyz to fail")
            assert json.loads(body)["error"].startswith("database unavailable")
            assert node.ops("/livez")[0] == 200
            proxy.open()
            wait_for(lambda: node.ops("/readyz")[0] == 200, 30, "readyz to recover")
            assert node.process is not None and node.process.poll() is None
        finally:
            assert node.stop() == 0
