"""A node's scheduler (SPEC §3.2, §8): admit pending jobs, claim queued ones, recover orphaned ones.

It polls every MIRROR_NEURON_POLL_INTERVAL_MS (`tick`) and, between polls, reacts to wake-ups
(`react`): commits of this process (`on_commit`), notifications from other processes
(`on_wakeup`, Postgres), a runner that finished. Which committed events wake a node is one rule,
`store.wakeups.wakeup_of`, used both here and by the process that announces them. The scheduler
takes leases; the job starter (`JobStarter`) starts the jobs it took; the node's `OwnedJobs`
says how many slots are free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from app.config import Settings
from app.domain.events import Event
from app.domain.job import AdmitJob, Rejected
from app.runtime.jobs import OwnedJobs
from app.runtime.starter import JobStarter
from app.service import Service
from app.store import event_store, leases, scheduling, wakeups
from app.store.database import Database, is_unavailable
from app.store.leases import Fence, TakenLease

log = logging.getLogger(__name__)


class Scheduler:
    """Decides when this node admits, claims and recovers jobs, and follows the jobs it runs."""

    def __init__(
        self, settings: Settings, db: Database, service: Service, jobs: OwnedJobs, starter: JobStarter,
        *, incarnation: str,
    ) -> None:
        self.settings = settings
        self.db = db
        self.service = service
        self.jobs = jobs
        self.starter = starter
        self.name = settings.node_name
        self.incarnation = incarnation
        self.ttl_ms = int(settings.lease_ttl_seconds * 1000)
        self._wake = asyncio.Event()
        self._dirty: set[str] = set()
        self._admit_due = False  # another process submitted (a Postgres wake-up) since the last admission
        # This process queued a job, or the last claim took as many jobs as it had free slots:
        # a wake-up claims without first asking whether anything is queued.
        self._queued_due = False

    # ---------------------------------------------------------------- wake-ups

    def wake(self) -> None:
        """Act now rather than at the next poll (a slot was freed, or work may be waiting)."""
        self._wake.set()

    def on_commit(self, stream_id: str, recorded: list[Event]) -> None:
        """The API of this process appended something: react now instead of at the next poll.

        (A submit through this process's API is admitted in its own commit: `Service.admitting_node`,
        so the wake-up's `admit` is not this node's business.)
        """
        wake = wakeups.wakeup_of([(stream_id, recorded)])
        owned = wake.jobs & self.jobs.runners.keys()
        self._queued_due = self._queued_due or wake.claim
        self._dirty |= owned
        if wake.claim or owned:
            self._wake.set()

    def on_wakeup(self, wake: wakeups.Wakeup) -> None:
        """Another process committed work for runtime nodes (Postgres NOTIFY): react now, not at the poll."""
        runners = self.jobs.runners
        self._admit_due = self._admit_due or wake.admit
        self._queued_due = self._queued_due or wake.claim
        self._dirty.update(runners if wake.every_job else wake.jobs & runners.keys())
        self._wake.set()

    # ---------------------------------------------------------------- the loop

    async def run(self) -> None:
        """Poll and react until cancelled; a failed round is logged and the next one tries again."""
        interval = self.settings.poll_interval_ms / 1000
        next_poll = time.monotonic() + interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(next_poll - time.monotonic(), 0)):
                    await self._wake.wait()
            self._wake.clear()
            try:
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + interval
                    await self.tick()
                else:
                    await self.react()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_unavailable(exc):
                    log.exception("scheduling tick failed")
                await asyncio.sleep(interval)

    async def tick(self) -> None:
        """One scheduling round: follow owned jobs, admit, recover, claim (SPEC §3.2)."""
        self.jobs.forget_finished()
        await self._follow_owned()
        await self.admit()
        await self.recover()
        await self.claim()

    async def react(self) -> None:
        """A wake-up between two polls: act on what this process's own commits announced.

        A submit asks for admission, an admission or a finished job for a claim, a pause, cancel
        or external message for a sync of that runner. What other processes write, and leases
        that expire, wait for the poll (`tick`): querying for them on every wake-up had cost a
        busy node four extra queries per job.
        """
        self.jobs.forget_finished()
        await self._sync_dirty()
        if self._admit_due:
            await self.admit()
        if self._queued_due:
            await self.claim(known_queued=True)

    # ---------------------------------------------------------------- the jobs this node runs

    async def _follow_owned(self) -> None:
        runners = self.jobs.runners
        if not runners:
            return
        async with self.db.read() as conn:
            heads = await scheduling.stream_heads(conn, list(runners))
        dirty, self._dirty = self._dirty, set()
        stale = []
        for job_id, runner in runners.items():
            if job_id not in heads:
                runner.stop()  # deleted by cleanup
            elif heads[job_id] > runner.job.last_sequence or job_id in dirty:
                stale.append(runner.sync())
        await asyncio.gather(*stale, return_exceptions=True)

    async def _sync_dirty(self) -> None:
        dirty, self._dirty = self._dirty, set()
        runners = [self.jobs.runners[job_id] for job_id in dirty if job_id in self.jobs.runners]
        await asyncio.gather(*(runner.sync() for runner in runners), return_exceptions=True)

    # ---------------------------------------------------------------- admit, recover, claim

    async def admit(self) -> None:
        """Admit up to a page of pending jobs, oldest submission first."""
        self._admit_due = False
        async with self.db.read() as conn:
            pending = await scheduling.pending_jobs(conn)
        # Concurrently, so that the service commits them together (group commit).
        admitted = await asyncio.gather(
            *(self.service.execute(job_id, AdmitJob(self.name)) for job_id in pending), return_exceptions=True
        )
        for result in admitted:
            # Rejected: another node admitted it first (or it was cancelled).
            if isinstance(result, BaseException) and not isinstance(result, Rejected):
                raise result
        if len(pending) == scheduling.ADMIT_PAGE:
            self._admit_due = True  # more are waiting
        if pending:
            self._wake.set()

    async def recover(self) -> None:
        """Take over, one by one, running jobs whose lease lapsed and recover them here."""
        free = self.jobs.free_slots()
        if free <= 0:
            return
        now = self.service.clock()
        async with self.db.read() as conn:
            candidates = await scheduling.recoverable_jobs(conn, now_ms=now, limit=free)
        for row in candidates:
            if row.job_id in self.jobs.runners:
                # Our own lease lapsed (renewals failed): stop the local copy first; the job is
                # recovered on a later tick, by us or by another node.
                self.jobs.runners[row.job_id].stop(lease_lost=True)
                continue
            if self.jobs.is_starting(row.job_id):
                continue
            self.jobs.mark_starting(row.job_id)
            try:
                taken = await self._take_for_recovery(row.job_id, row.last_node, leased=row.leased)
                if taken is not None:
                    await self.starter.recover(row.job_id, taken)
            finally:
                self.jobs.end_starting([row.job_id])

    async def _take_for_recovery(self, job_id: str, last_node: str | None, *, leased: bool) -> TakenLease | None:
        now = self.service.clock()
        async with self.db.write() as conn:
            if leased:
                return await leases.take_over(
                    conn, job_id, node=self.name, incarnation=self.incarnation, now_ms=now, ttl_ms=self.ttl_ms
                )
            fence = await leases.claim(
                conn, job_id, node=self.name, incarnation=self.incarnation, now_ms=now, ttl_ms=self.ttl_ms
            )
        return None if fence is None else TakenLease(fence, last_node or "", released=False)

    async def claim(self, *, known_queued: bool = False) -> None:
        """Take the leases of up to `free` queued jobs and start them.

        On Postgres the claim is one statement in autocommit that locks the queued jobs, takes
        their leases and returns their events (`scheduling.claim_queued`): a freed slot costs one
        round trip before the job's StartJob, and no "anything queued?" query is asked first (the
        claim of nothing costs the same as the question). On SQLite the same steps run in one
        write transaction, after that question.
        """
        free = self.jobs.free_slots()
        if free <= 0:
            return
        if not known_queued and not self.db.is_postgres:
            async with self.db.read() as conn:
                queued = await scheduling.any_queued(conn)
            if not queued:
                self._queued_due = False
                return  # nothing to claim: no write transaction on an idle tick
        claimed: list[tuple[str, Fence]] = []
        try:
            async with self.db.statement() as conn:
                now = self.service.clock()
                claim = await scheduling.claim_queued(
                    conn, free, node=self.name, incarnation=self.incarnation, now_ms=now, ttl_ms=self.ttl_ms
                )
                self._queued_due = len(claim.picked) >= free  # a full page: more may be waiting
                for job_id, fence in claim.fences.items():
                    claimed.append((job_id, fence))
                    self.jobs.mark_starting(job_id)  # the heartbeat keeps its lease alive
            streams = claim.streams
            if len(claim.fences) < len(claim.picked):
                # Leases left by a node that died between claiming and bootstrapping: take them over.
                async with self.db.write() as conn:
                    taken: list[tuple[str, Fence]] = []
                    for job_id in claim.picked:
                        if job_id not in claim.fences:
                            taken_over = await self._take_over_lease(conn, job_id, now)
                            if taken_over is not None:
                                taken.append((job_id, taken_over))
                                claimed.append((job_id, taken_over))
                                self.jobs.mark_starting(job_id)
                    streams = {**streams, **await event_store.read_streams(conn, [job_id for job_id, _ in taken])}
        except BaseException:
            # Including a COMMIT whose answer was lost: the leases may have been taken after all.
            # Forgotten here, the heartbeat lets them lapse (renew_owned) and a later claim takes
            # them over; kept, they would be renewed forever with no runner behind them.
            self.jobs.end_starting(job_id for job_id, _ in claimed)
            raise
        await asyncio.gather(*(self.starter.bootstrap(job_id, fence, streams[job_id]) for job_id, fence in claimed))

    async def _take_over_lease(self, conn: Any, job_id: str, now: int) -> Fence | None:
        # A lease left by a node that died between claiming and bootstrapping: take it over.
        taken = await leases.take_over(conn, job_id, node=self.name, incarnation=self.incarnation, now_ms=now, ttl_ms=self.ttl_ms)
        return None if taken is None else taken.fence
