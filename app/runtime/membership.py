"""A node's membership of the cluster (SPEC §8.5, §10): registration, heartbeat, self-fencing, leaving.

The heartbeat renews the node row and the leases of the jobs the node owns in one transaction;
it also marks nodes whose heartbeat expired lost. A node that finds its row taken by another
incarnation, or itself declared lost, or that could not renew for longer than the lease TTL,
stops every job without writing: `fenced_out` is set when it must exit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import shutil
import subprocess
import time
from typing import Any

from app.config import Settings
from app.domain.canonical import format_ms
from app.ops import memory, metrics
from app.runtime.jobs import OwnedJobs
from app.service import NodeRegistry, Service
from app.store import leases
from app.store.database import Database, is_unavailable
from app.store.nodes import NodeRow, heartbeat

log = logging.getLogger(__name__)


def hardware() -> dict[str, Any]:
    """CPU, memory and GPU facts collected at start (SPEC §10.3)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 0
    gpu: Any = "Unknown or None"
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=5, check=True,
            ).stdout
            gpu = [line.strip() for line in out.splitlines() if line.strip()] or gpu
        except (OSError, subprocess.SubprocessError):
            pass
    return {
        "cpu": {"logical_processors": os.cpu_count() or 1, "architecture": platform.machine()},
        "memory": {"total_bytes": total, "total_mb": total // (1024 * 1024)},
        "gpu": gpu,
    }


class Membership:
    """Registers the node, keeps it and its job leases alive, and fences it out when it was replaced."""

    def __init__(
        self, settings: Settings, db: Database, service: Service, jobs: OwnedJobs,
        *, incarnation: str, capacities: dict[str, int],
    ) -> None:
        self.settings = settings
        self.db = db
        self.service = service
        self.jobs = jobs
        self.name = settings.node_name
        self.incarnation = incarnation
        self.capacities = capacities
        self.ttl_ms = int(settings.lease_ttl_seconds * 1000)
        self.registry = NodeRegistry(service)
        self.fenced_out = asyncio.Event()
        self._last_renewal = 0
        self._next_trim = 0.0  # monotonic time of the next malloc trim (see app/ops/memory.py)

    async def register(self) -> None:
        """Upsert the node row and record `node_registered` (SPEC §1.2)."""
        started = self.service.clock()
        row = NodeRow(
            name=self.name, incarnation=self.incarnation, started_at_ms=started,
            api_enabled=self.settings.api_enabled, runtime_enabled=self.settings.runtime_enabled,
            executor_pools=self.capacities, hardware=hardware(),
        )
        payload = {
            "node": self.name, "incarnation": self.incarnation, "started_at": format_ms(started),
            "api_enabled": row.api_enabled, "runtime_enabled": row.runtime_enabled,
            "executor_pools": row.executor_pools, "hardware": row.hardware,
        }
        await self.registry.register(row, payload)
        self._last_renewal = started

    async def leave(self) -> None:
        """Mark the node stopped and record `node_stopped` (graceful shutdown, SPEC §10.4)."""
        await self.registry.stopped(self.name, self.incarnation)

    async def run(self) -> None:
        """Beat every MIRROR_NEURON_HEARTBEAT_SECONDS until cancelled; stop every job once renewals lapse."""
        while True:
            # A heartbeat that hangs (a dropped connection, a lock) must not stop the TTL check.
            budget = max(self.ttl_ms - (self.service.clock() - self._last_renewal), 0) / 1000
            try:
                async with asyncio.timeout(max(budget, self.settings.heartbeat_seconds)):
                    await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_unavailable(exc) and not isinstance(exc, TimeoutError):
                    log.exception("heartbeat failed")
            # SPEC §8.5: unable to renew for longer than the TTL → stop every job.
            if self.service.clock() - self._last_renewal > self.ttl_ms:
                self.jobs.stop_all(lease_lost=True)
            if time.monotonic() >= self._next_trim:
                self._next_trim = time.monotonic() + memory.TRIM_INTERVAL_SECONDS
                memory.trim()
            await asyncio.sleep(self.settings.heartbeat_seconds)

    async def beat(self) -> None:
        """One heartbeat: renew the node and its owned leases, stop runners whose lease is gone, expire lost nodes."""
        now = self.service.clock()
        owned = self.jobs.owned_ids()
        async with self.db.write() as conn:
            mine = await heartbeat(conn, self.name, self.incarnation, now)
            if mine:
                await leases.renew_owned(conn, self.incarnation, owned, now_ms=now, ttl_ms=self.ttl_ms)
            held = await leases.held_tokens(conn, self.incarnation, now)
        if mine:
            metrics.leases_renewed(len(owned))
        if not mine:
            # Another incarnation took our name, or another node declared us lost (our leases
            # have expired and our jobs are being recovered elsewhere): fence ourselves out.
            log.error("node %s was replaced or declared lost; stopping all jobs and exiting", self.name)
            self.jobs.stop_all(lease_lost=True)
            self.fenced_out.set()
            return
        self._last_renewal = now
        gone = [
            runner
            for job_id, runner in list(self.jobs.runners.items())
            if held.get(job_id) != runner.fence.token and not runner.job.terminal
        ]
        await asyncio.gather(*(runner.lease_gone() for runner in gone))
        await self.registry.expire(self.name, self.ttl_ms)
