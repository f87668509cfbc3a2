"""Running Alembic from the application: upgrade to head (serialised on Postgres) and revision checks."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

PACKAGE = Path(__file__).resolve().parents[1]  # app/
# An installed wheel carries alembic.ini and migrations/ in app/_alembic/ (setup.py copies them);
# a checkout or an editable install has them at the repository root.
PACKAGED_INI = PACKAGE / "_alembic" / "alembic.ini"
CHECKOUT_INI = PACKAGE.parent / "alembic.ini"
MIGRATE_LOCK_KEY = 0x4D4E_4D49_4752  # arbitrary constant shared by every node: "MNMIGR"


def alembic_ini() -> Path:
    """The alembic.ini this code runs with: the installed package's, else the checkout's."""
    return PACKAGED_INI if PACKAGED_INI.is_file() else CHECKOUT_INI


def alembic_config() -> Config:
    """The project's Alembic configuration, independent of the working directory."""
    ini = alembic_ini()
    cfg = Config(str(ini))
    cfg.set_main_option("script_location", str(ini.parent / "migrations"))
    # The ini's `prepend_sys_path = .` serves `alembic upgrade head` in a checkout. Here `app` is
    # imported already, and putting the working directory first on sys.path would let any `app/`
    # directory where a service happens to start shadow the installed package.
    cfg.set_main_option("prepend_sys_path", "")
    return cfg


def head_revision() -> str | None:
    """The newest revision the code knows."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Concurrent starts of several nodes: one migrates, the others wait and find head.
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATE_LOCK_KEY})
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


async def upgrade_to_head(engine: AsyncEngine) -> None:
    """Apply every pending migration in one transaction."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None when never migrated)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)
