"""Alembic environment: async engines, batch mode on SQLite, or a connection handed in by the app."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.store.database_url import DatabaseUrlError, async_url
from app.store.tables import metadata

DEFAULT_URL = "sqlite+aiosqlite:///./mirror_neuron.db"


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_configure)
            await conn.commit()
    finally:
        await engine.dispose()


def run() -> None:
    """Use the app's connection when given one; otherwise connect to MIRROR_NEURON_DATABASE_URL."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    try:
        url = async_url(os.environ.get("MIRROR_NEURON_DATABASE_URL", DEFAULT_URL))
    except DatabaseUrlError as exc:
        raise SystemExit(f"MIRROR_NEURON_DATABASE_URL {exc}") from None
    asyncio.run(_run_async(url))


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run against a database")
run()
