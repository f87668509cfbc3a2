"""What every long-running process of the service does at start, `serve`, `worker` and the extra
API processes of MIRROR_NEURON_API_PROCESSES alike: read its settings (or exit naming the bad
variable), configure logging, tune memory, and run its main coroutine on uvloop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Coroutine, Mapping
from typing import Any

from app.cli.common import EXIT_USAGE
from app.config import ConfigError, Settings

# Libraries whose chatter is not the service's: alembic's "setup plugin ..." lines at every
# migration, and aiosqlite's DEBUG line per statement (they bury ours at LOG_LEVEL=DEBUG).
QUIET_LOGGERS = ("alembic.runtime.plugins", "aiosqlite")


def settings_or_exit(env: Mapping[str, str] | None = None) -> Settings:
    """The settings read from `env` (the process environment by default), or exit naming the bad variable."""
    try:
        return Settings.from_env(os.environ if env is None else env)
    except ConfigError as exc:
        print(f"mirror-neuron: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def configure_logging(settings: Settings) -> None:
    from app.ops import logs

    logs.configure(settings.log_format, settings.log_level, node=settings.node_name)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def run(main: Coroutine[Any, Any, int]) -> int:
    """Run a long-lived process on uvloop where it is installed.

    uvloop's event loop and uvicorn's httptools parser (both installed with the project on
    Linux and macOS) cut the CPU a request and a step cost: see README "Benchmarks".
    """
    from app.ops import memory

    memory.limit_arenas()
    memory.tune_gc()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
