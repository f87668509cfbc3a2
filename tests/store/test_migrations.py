"""Migrations from empty to head on both databases, with `alembic check` clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from app.store.migrate import current_revision, head_revision
from app.store.tables import metadata
from tests.conftest import create_pg_database, drop_pg_database, migrate

ROOT = Path(__file__).resolve().parents[2]


async def _fresh(backend: str, tmp_path: Path) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}", None
    name, url = await create_pg_database("mn_migr")
    return url, name


async def test_empty_to_head_then_alembic_check(backend: str, tmp_path: Path) -> None:
    url, name = await _fresh(backend, tmp_path)
    engine = create_async_engine(url)
    try:
        assert await current_revision(engine) is None
        await migrate(url)
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        assert set(metadata.tables) <= tables
        check = subprocess.run(
            [sys.executable, "-m", "alembic", "check"],
            cwd=ROOT, env={"MIRROR_NEURON_DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, timeout=120,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert "No new upgrade operations detected" in check.stdout + check.stderr
        await migrate(url)  # idempotent: a second start finds head
    finally:
        await engine.dispose()
        if name is not None:
            await drop_pg_database(name)
