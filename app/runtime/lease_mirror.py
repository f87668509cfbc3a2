"""The `executor_leases` mirror of a node's executor pools (SPEC §7.6): what is queued and held, for the API."""

from __future__ import annotations

import asyncio
import logging

from app.runtime.pools import LeaseRow
from app.store import leases
from app.store.database import Database

log = logging.getLogger(__name__)


class ExecutorLeaseMirror:
    """Writes the newest state of each executor lease request and grant into `executor_leases`.

    The pools call `record` on every change and wait for it, so it only records the lease's
    newest state; one background task writes what is pending in one transaction. Three write
    transactions per executor run (queued, held, removed), each on the critical path of a pool
    slot, had made a 200-executor fan-out 1.5× slower than the commands alone. The mirror is
    best effort: a failed write is logged at debug level and the next change writes again.
    """

    def __init__(self, db: Database, node: str, incarnation: str) -> None:
        self.db = db
        self.node = node
        self.incarnation = incarnation
        self._pending: dict[str, LeaseRow] = {}
        self._task: asyncio.Task[None] | None = None

    async def record(self, row: LeaseRow) -> None:
        """Note a lease's newest state; it is written in the background (the pools' `on_change`)."""
        self._pending[row.lease_id] = row
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush(), name="executor-lease-mirror")

    async def drain(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for what is pending to be written (shutdown)."""
        if self._task is not None:
            await asyncio.wait([self._task], timeout=timeout)

    async def _flush(self) -> None:
        while self._pending:
            rows, self._pending = self._pending, {}
            try:
                async with self.db.write() as conn:
                    await leases.mirror_executor_leases(
                        conn, rows.values(), node=self.node, incarnation=self.incarnation
                    )
            except Exception as exc:
                log.debug("executor lease mirror failed: %s", type(exc).__name__)
