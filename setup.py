"""Ship the top-level `migrations/` and `alembic.ini` inside the installed package.

Everything else is declared in pyproject.toml. The repository keeps `migrations/` and
`alembic.ini` at its root (so `alembic upgrade head` works from a checkout); a wheel has no
repository root, so the build copies both into `app/_alembic/`, where `app.store.migrate`
finds them. The ini's `script_location = %(here)s/migrations` is right in both places.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PACKAGED = ("app", "_alembic")  # where the copy lives inside the distribution


class build_py_with_migrations(build_py):  # noqa: N801 (setuptools command naming)
    """build_py plus the migrations and their alembic.ini (not for editable installs: they use the root)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib, *PACKAGED)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        shutil.copy2(ROOT / "alembic.ini", target / "alembic.ini")
        shutil.copytree(
            ROOT / "migrations", target / "migrations", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )


setup(cmdclass={"build_py": build_py_with_migrations})
