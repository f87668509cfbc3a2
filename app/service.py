"""`Service.execute`: the one write path (DESIGN §4).

BEGIN → load the job row (locked) and the agent rows the command needs → check the fence →
decide → seal the events → fold them into the projection → write the projection → take
positions and insert the events → COMMIT. A conflict on (stream_id, sequence) retries the whole
load–decide–append a bounded number of times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.bundles import scanner
from app.config import Settings
from app.domain import events as ev
from app.domain.bundle import (
    BundleVersion,
    decide_discovery,
    decide_reload,
    decide_scan,
    decide_upload,
    from_upload,
    project_bundle,
)
from app.domain.canonical import canonical_json, format_ms
from app.domain.events import Event, NewEvent
from app.domain.job import (
    CANCELLED_BY_CLEANUP,
    FENCED_COMMANDS,
    AdmitJob,
    CancelJob,
    Command,
    CommitStep,
    DeliverExternal,
    FailStep,
    FinishRecovery,
    RecordAgentEvents,
    Rejected,
    StartJob,
    SubmitJob,
    decide,
    submitted_payload,
)
from app.domain.job import command_id as derive_command_id
from app.domain.projection import JobProjection, fold
from app.ops import lifecycle, metrics, tracing
from app.ops import origin as ops_origin
from app.ops.origin import NOBODY, Origin
from app.store import archives, event_store, leases, projector, wakeups
from app.store import nodes as nodes_store
from app.store.database import Database, is_unavailable
from app.store.event_store import ConcurrencyConflict, StreamHead
from app.store.leases import Fence, LeaseLost
from app.store.nodes import NodeRow
from app.store.tables import agents, bundles, events, executor_leases, jobs

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 20

T = TypeVar("T")


async def retried(attempt: Callable[[], Awaitable[T]], stream_id: str) -> T:
    """`attempt()`, run again while another writer wins the race (ConcurrencyConflict), at most MAX_ATTEMPTS times."""
    for _ in range(MAX_ATTEMPTS):
        try:
            return await attempt()
        except ConcurrencyConflict:
            continue
    raise ConcurrencyConflict(stream_id)


def now_ms() -> int:
    """Wall-clock time in Unix epoch milliseconds."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Outcome:
    """What a command appended (nothing for an idempotent no-op) and the job's projection after it.

    `replayed`: the command had committed before (a retry after an unknown outcome, or an HTTP
    control retried with its Idempotency-Key): `events` are the ones it appended then, and
    `projection` is None.
    """

    events: list[Event]
    projection: JobProjection | None
    replayed: bool = False


@dataclass(frozen=True)
class Submitted:
    """The answer to a submit: a new job, or the replay of an earlier one with the same key."""

    job_id: str
    status: str
    replayed: bool


class IdempotencyMismatch(Exception):
    """The Idempotency-Key was used before with a different request body."""


@dataclass(frozen=True)
class Cleaned:
    """The answer to a cleanup: the jobs it deleted, and whether its key had deleted some before."""

    deleted: list[str]
    replayed: bool = False


def _needs_lookup(result: Outcome | BaseException) -> bool:
    """Whether a command that carries an id may have committed in an earlier attempt.

    A command whose events are already in the log cannot append them again: its retry is
    rejected by `decide` (the step is processed, the job is no longer queued, ...), conflicts on
    the (stream_id, command_id) unique index, decides nothing (a second cancel), or finds the
    lease gone (its own terminal commit dropped it).
    """
    if isinstance(result, Outcome):
        return not result.events
    return isinstance(result, Rejected | ConcurrencyConflict | LeaseLost)


def new_job_id(graph_id: str, epoch_ms: int) -> str:
    """`<graph_id>-<unix_epoch_ms>-<12 lowercase hex>` (SPEC §1.4)."""
    return f"{graph_id}-{epoch_ms:013d}-{secrets.token_hex(6)}"


def _command_agents(command: Command) -> set[str]:
    """The agent rows a command's events touch: loaded with the job row, in the same query."""
    match command:
        case DeliverExternal():
            return {command.agent_id}
        case RecordAgentEvents() | CommitStep() | FailStep():
            # The step's own events name every agent they deliver to (SPEC §6.4).
            return {command.agent_id} | {e.agent_id for e in command.events if e.agent_id}
        case StartJob():
            return {m["envelope"]["to"] for m in command.seeds}
        case FinishRecovery():
            return set(command.agent_ids)
    return set()


def _reads_its_job(command: Command) -> bool:
    """False for a submit: its job id is new, so there is no row to load.

    (Should the id be taken after all, inserting the job row fails on its key: the batch runs its
    commands one by one and the submit draws a new id, as for a taken Idempotency-Key.)
    """
    return not isinstance(command, SubmitJob)


Listener = Callable[[str, list[Event]], Awaitable[None] | None]

# Group commit (Service.execute): at most this many commands per transaction, and at most this
# many write transactions of one process at once on Postgres (one on SQLite: a single writer).
MAX_BATCH = 200
BATCHES_IN_FLIGHT = 1


@dataclass(eq=False)
class _Pending:
    """A command waiting for its turn in a group commit (after `after`, if it is part of a chain)."""

    job_id: str
    command: Command
    fence: Fence | None
    future: asyncio.Future[Outcome]
    after: _Pending | None = None
    origin: Origin = NOBODY  # the caller's request id and trace context (app/ops/origin.py)
    command_id: str | None = None
    request_sha256: str | None = None

    def ids_of(self, sealed: list[Event]) -> list[str | None]:
        """The command id column of this command's sealed events: its id on the first only."""
        return [self.command_id if i == 0 else None for i in range(len(sealed))]

    def digests_of(self, sealed: list[Event]) -> list[str | None]:
        return [self.request_sha256 if i == 0 else None for i in range(len(sealed))]


def _chain_broken(pending: _Pending, settled: dict[_Pending, Outcome | BaseException]) -> bool:
    """Whether the command that `pending` follows in its chain failed or appended nothing."""
    before = pending.after
    if before is None:
        return False
    result = settled.get(before)
    if result is None:  # settled by an earlier batch
        future = before.future
        if not future.done() or future.cancelled() or future.exception() is not None:
            return True
        result = future.result()
    return not isinstance(result, Outcome) or not result.events


def _chain_dropped() -> Rejected:
    return Rejected("dropped", "the command it follows appended nothing")


class _RunAlone(Exception):
    """A batch conflicted (or deadlocked): roll it back and run its commands one by one."""


def _settle(pending: _Pending, result: Outcome | BaseException) -> None:
    if pending.future.done():  # the caller was cancelled; the result is dropped
        return
    if isinstance(result, BaseException):
        pending.future.set_exception(result)
    else:
        pending.future.set_result(result)


class Service:
    """Executes commands against the event store; the only code that appends events."""

    def __init__(self, db: Database, clock: Callable[[], int] = now_ms) -> None:
        self.db = db
        self.clock = clock
        # Names this process in its Postgres wake-up notifications, so that it ignores its own.
        self.origin = secrets.token_hex(8)
        self._listeners: list[Callable[[str, list[Event]], None]] = []
        self._queue: list[_Pending] = []
        self._in_flight = 0
        self._batch_tasks: set[asyncio.Task[None]] = set()
        # The runtime node of this process, if any: it admits what this process submits (see submit).
        self.admitting_node: str | None = None
        self._unannounced = wakeups.Wakeup()  # committed, not yet notified (see _announce)
        self._announcer: asyncio.Task[None] | None = None

    def subscribe(self, listener: Callable[[str, list[Event]], None]) -> None:
        """Call `listener(stream_id, events)` after every commit made by this process."""
        self._listeners.append(listener)

    def _notify(self, stream_id: str, recorded: list[Event]) -> None:
        lifecycle.committed(stream_id, recorded)
        self._tell_listeners(stream_id, recorded)

    def _tell_listeners(self, stream_id: str, recorded: list[Event]) -> None:
        for listener in self._listeners:
            try:
                listener(stream_id, recorded)
            except Exception:  # a listener must never undo a committed write
                log.exception("event listener failed")
        self._announce(stream_id, recorded)

    def _announce(self, stream_id: str, recorded: list[Event]) -> None:
        """On Postgres, tell other processes' nodes what a commit gave them to do (app/store/wakeups.py).

        Sent after the commit by a background task, coalescing what commits meanwhile: a
        notification that cannot be sent (a full notification queue, a lost connection) must
        never fail or delay a write; the nodes' polls cover it.
        """
        if not self.db.is_postgres:
            return
        wake = wakeups.wakeup_of([(stream_id, recorded)])
        if not wake:
            return
        self._unannounced.merge(wake)
        if self._announcer is None or self._announcer.done():
            self._announcer = asyncio.get_running_loop().create_task(self._send_announcements())

    async def _send_announcements(self) -> None:
        while self._unannounced:
            wake, self._unannounced = self._unannounced, wakeups.Wakeup()
            try:
                async with self.db.read() as conn:
                    await wakeups.notify(conn, self.origin, wake)
            except Exception as exc:
                log.debug("could not send a wake-up notification: %s", type(exc).__name__)

    # ------------------------------------------------------------ job commands

    async def execute(
        self,
        job_id: str,
        command: Command,
        fence: Fence | None = None,
        *,
        command_id: str | None = None,
        request_sha256: str | None = None,
    ) -> Outcome:
        """Decide and append `command` for one job; raises Rejected, LeaseLost or DatabaseUnavailable.

        Group commit: commands that arrive while this process's write transactions are busy are
        queued and executed together in one transaction (each against the state the previous
        ones left), so that N concurrent commands cost one BEGIN, one lock of the position
        counter and one COMMIT (one WAL flush) instead of N. A command alone runs on its own.

        Exactly once: a command given a `command_id` appends its events to the job at most once.
        Executed again after it committed (a retry after a lost acknowledgement), it answers the
        events it appended then (`Outcome.replayed`); with a `request_sha256` (a keyed HTTP
        control) that differs from the first one's, it raises IdempotencyMismatch.
        """
        (result,) = await self.execute_chain(
            job_id, [command], fence, command_ids=[command_id], request_sha256=request_sha256
        )
        if isinstance(result, BaseException):
            raise result
        return result

    async def execute_chain(
        self,
        job_id: str,
        commands: Sequence[Command],
        fence: Fence | None = None,
        *,
        command_ids: Sequence[str | None] | None = None,
        request_sha256: str | None = None,
    ) -> list[Outcome | BaseException]:
        """Execute `commands` of one job in order, each only if the one before it appended events.

        They enter the group commit together, so they usually share one transaction; should the
        batch run its commands one by one, the order holds and a command whose predecessor
        appended nothing is dropped (`Rejected`). Returns each command's outcome or exception.
        `command_ids` (one per command, see `execute`) make each of them exactly once.
        """
        loop = asyncio.get_running_loop()
        ids = list(command_ids) if command_ids is not None else [None] * len(commands)
        chain: list[_Pending] = []
        lease = None if fence is None else f"{fence.incarnation}.{fence.token}"
        for command, given_id in zip(commands, ids, strict=True):
            if isinstance(command, FENCED_COMMANDS) and fence is None:
                raise ValueError(f"{type(command).__name__} must carry the job lease")
            after = chain[-1] if chain else None
            command_id = given_id if given_id is not None else derive_command_id(command, lease)
            chain.append(
                _Pending(
                    job_id, command, fence, loop.create_future(), after, ops_origin.capture(),
                    command_id=command_id, request_sha256=request_sha256 if command_id is not None else None,
                )
            )
        self._queue.extend(chain)
        self._start_batches()
        results: list[Outcome | BaseException] = []
        try:
            for pending in chain:
                try:
                    results.append(await pending.future)
                except Exception as exc:
                    results.append(exc)
        except asyncio.CancelledError:
            for pending in chain:
                if pending in self._queue:  # not started yet: it never runs
                    self._queue.remove(pending)
            raise
        return results

    def _start_batches(self) -> None:
        limit = BATCHES_IN_FLIGHT if self.db.is_postgres else 1
        while self._queue and self._in_flight < limit:
            batch = self._queue[:MAX_BATCH]
            del self._queue[:MAX_BATCH]
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._run_batch(batch))
            self._batch_tasks.add(task)
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batch_tasks.discard(task)
        self._in_flight -= 1
        self._start_batches()

    async def _run_batch(self, batch: list[_Pending]) -> None:
        live = [p for p in batch if not p.future.done()]
        with tracing.write_transaction([p.origin.trace for p in live], [p.job_id for p in live]):
            await self._run_live(live)

    async def _run_live(self, live: list[_Pending]) -> None:
        if len(live) > 1:
            try:
                results = await self._execute_many(live)
            except _RunAlone:
                results = None
            except BaseException as exc:  # the database failed: every command of the batch failed
                for p in live:
                    _settle(p, exc)
                if not isinstance(exc, Exception):
                    raise
                return
            if results is not None:
                await self._answer(live, results)
                return
        for i, p in enumerate(live):  # one command, or a batch that conflicted: a batch of one each
            try:
                await self._answer([p], [await self._execute_one(p)])
            except BaseException as exc:  # cancelled (loop shutdown): nobody may wait forever
                for q in live[i:]:
                    _settle(q, exc)
                raise

    async def _answer(self, batch: list[_Pending], results: list[Outcome | BaseException]) -> None:
        """Settle each command's future, in order, with its result or its earlier commit's replay."""
        for i, (p, result) in enumerate(zip(batch, results, strict=True)):
            try:
                result = await self._unless_committed(p, result)
            except BaseException as exc:  # cancelled: nobody may wait forever
                for q in batch[i:]:
                    _settle(q, exc)
                raise
            _settle(p, result)

    async def _unless_committed(self, p: _Pending, result: Outcome | BaseException) -> Outcome | BaseException:
        """`result`, or the replay of the command's earlier commit if it appended nothing now.

        The check runs only when a command that carries an id appended nothing, never on the
        way of a command that appends: a first attempt pays nothing for being retriable.
        """
        if p.command_id is None or not _needs_lookup(result):
            return result
        try:
            async with self.db.read() as conn:
                found = (await event_store.committed_commands(conn, p.job_id, [p.command_id])).get(p.command_id)
        except Exception as exc:
            if is_unavailable(exc):
                return exc  # unknown again: the caller retries
            raise
        if found is None:
            return result
        if found.request_sha256 != p.request_sha256:
            return IdempotencyMismatch(p.command_id)
        return Outcome(found.events, None, replayed=True)

    async def _execute_many(self, batch: list[_Pending]) -> list[Outcome | BaseException]:
        """The batch together in one transaction; raises _RunAlone if it conflicted."""
        try:
            results = await self._transaction(batch)
        except ConcurrencyConflict as exc:
            raise _RunAlone from exc
        except DBAPIError as exc:  # a deadlock or serialization failure between batches
            if is_unavailable(exc):
                raise
            raise _RunAlone from exc
        self._committed(batch, results)
        return results

    async def _execute_one(self, p: _Pending) -> Outcome | BaseException:
        """A batch of one, run again while another writer wins the race; returns its result."""
        if _chain_broken(p, {}):
            return _chain_dropped()
        with ops_origin.acting_for(p.origin):
            try:
                return await retried(lambda: self._attempt_alone(p), p.job_id)
            except Exception as exc:
                return exc

    async def _attempt_alone(self, p: _Pending) -> Outcome | BaseException:
        try:
            (result,) = await self._transaction([p])
        except ConcurrencyConflict as exc:
            if isinstance(p.command, SubmitJob):
                return exc  # a taken job id or Idempotency-Key: `submit` decides what to do
            if p.command_id is not None:
                # Perhaps its own earlier commit (the unique command id), else another writer.
                replay = await self._unless_committed(p, Outcome([], None))
                if not isinstance(replay, Outcome) or replay.replayed:
                    return replay
            raise
        if isinstance(result, Outcome):  # a command that failed alone committed nothing
            self._committed([p], [result])
        return result

    def _committed(self, batch: list[_Pending], results: list[Outcome | BaseException]) -> None:
        """After COMMIT: count the batch, then tell the listeners what each command appended."""
        metrics.batch_committed(len(batch))
        for p, result in zip(batch, results, strict=True):
            if isinstance(result, Outcome) and result.events and not result.replayed:
                with ops_origin.acting_for(p.origin):
                    self._notify(p.job_id, result.events)

    async def _transaction(self, batch: list[_Pending]) -> list[Outcome | BaseException]:
        """The one body of the write path: the batch decided and appended in one transaction.

        Raises ConcurrencyConflict when another writer took a key first (a position, a job id,
        an Idempotency-Key, a command id); a command's own failure is its result.
        """
        try:
            async with self.db.write() as conn:
                return await self._decide_and_append(conn, batch)
        except IntegrityError as exc:
            raise ConcurrencyConflict(batch[0].job_id) from exc

    async def _decide_and_append(
        self, conn: AsyncConnection, batch: list[_Pending]
    ) -> list[Outcome | BaseException]:
        """One query per table to load, each command decided against the state the previous left, one write per table."""
        jobs_found = await projector.load_jobs(conn, [p.job_id for p in batch if _reads_its_job(p.command)], lock=True)
        wanted: dict[str, set[str]] = {}
        for p in batch:
            wanted.setdefault(p.job_id, set()).update(_command_agents(p.command))
        agents_found = await projector.load_agents_of(conn, {j: a for j, a in wanted.items() if j in jobs_found})
        fenced = [p.job_id for p in batch if p.fence is not None]
        lease_rows = await leases.lease_rows(conn, fenced) if fenced else {}
        before: dict[str, JobProjection | None] = {
            j: JobProjection(job, agents_found.get(j, {})) for j, job in jobs_found.items()
        }
        states: dict[str, JobProjection | None] = dict(before)
        results: list[Outcome | BaseException] = []
        settled: dict[_Pending, Outcome | BaseException] = {}
        sealed_of: list[list[Event]] = []
        for p in batch:
            state = states.get(p.job_id)
            sealed: list[Event] = []
            try:
                if _chain_broken(p, settled):
                    raise _chain_dropped()
                now = self.clock()
                if p.fence is not None:
                    leases.check_fence_row(lease_rows.get(p.job_id), p.job_id, p.fence, now)
                decision = decide(state, p.command, p.job_id)
                if decision.events:
                    if state is not None:
                        missing = {e.agent_id for e in decision.events if e.agent_id} - set(state.agents)
                        if missing:
                            loaded = await projector.load_agents(conn, p.job_id, missing)
                            state = JobProjection(state.job, {**state.agents, **loaded})
                            first = before[p.job_id]
                            if first is not None:
                                before[p.job_id] = JobProjection(first.job, {**loaded, **first.agents})
                    job = None if state is None else state.job
                    head = StreamHead() if job is None else StreamHead(job.last_sequence, job.last_hash, job.last_timestamp)
                    sealed = event_store.seal(p.job_id, p.job_id, head, decision.events, now)
                    state = fold(sealed, state)
                    states[p.job_id] = state
                results.append(Outcome(sealed, state))
            except (ConcurrencyConflict, DBAPIError):
                raise
            except Exception as exc:  # Rejected, LeaseLost, or a failure of this command alone
                results.append(exc)
            settled[p] = results[-1]
            sealed_of.append(sealed)
        changed = sorted({p.job_id for p, sealed in zip(batch, sealed_of, strict=True) if sealed})
        if not changed:
            return results
        final = {j: states[j] for j in changed}
        await projector.save_many(conn, [(before.get(j), s) for j, s in final.items() if s is not None])
        await leases.drop_jobs(conn, [j for j, s in final.items() if s is not None and s.job.terminal])
        recorded = iter(
            await event_store.insert_sealed(
                conn,
                [e for sealed in sealed_of for e in sealed],
                [c for p, sealed in zip(batch, sealed_of, strict=True) for c in p.ids_of(sealed)],
                [d for p, sealed in zip(batch, sealed_of, strict=True) for d in p.digests_of(sealed)],
            )
        )
        for i, sealed in enumerate(sealed_of):
            if sealed:
                outcome = results[i]
                assert isinstance(outcome, Outcome)
                results[i] = Outcome([next(recorded) for _ in sealed], outcome.projection)
        return results

    async def submit(
        self,
        *,
        manifest: dict[str, Any],
        bundle: dict[str, Any] | None,
        idempotency_key: str | None,
        request_sha256: str,
    ) -> Submitted:
        """Record `job_submitted`, or answer an earlier submit with the same Idempotency-Key."""
        payload = submitted_payload(
            manifest=manifest, bundle=bundle, idempotency_key=idempotency_key, request_sha256=request_sha256
        )

        async def attempt() -> Submitted:
            if idempotency_key is not None:
                earlier = await self._by_idempotency_key(idempotency_key)
                if earlier is not None:
                    job_id, status, digest = earlier
                    if digest != request_sha256:
                        raise IdempotencyMismatch(idempotency_key)
                    return Submitted(job_id, status, replayed=True)
            job_id = new_job_id(manifest["graph_id"], self.clock())
            # With a runtime node in this process, the job is admitted in the submit's own commit
            # (SPEC §3.2: a node admits at once what its API accepts); should that admission be
            # dropped, the node's next poll admits the job.
            admit = [] if self.admitting_node is None else [AdmitJob(self.admitting_node)]
            results = await self.execute_chain(job_id, [SubmitJob(payload), *admit])
            outcome = results[0]
            if isinstance(outcome, Rejected | ConcurrencyConflict):  # the key or the generated id is taken: look again
                raise ConcurrencyConflict(job_id)  # (of two concurrent requests with one key, the unique index lets one insert)
            if isinstance(outcome, BaseException):
                raise outcome
            assert outcome.projection is not None
            return Submitted(job_id, outcome.projection.job.status, replayed=False)

        return await retried(attempt, "submit")

    async def _by_idempotency_key(self, key: str) -> tuple[str, str, str | None] | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(jobs.c.job_id, jobs.c.status, jobs.c.request_sha256).where(
                        jobs.c.idempotency_key == key
                    )
                )
            ).first()
        return None if row is None else (row.job_id, row.status, row.request_sha256)

    async def release_job(self, job_id: str, fence: Fence, *, graceful: bool, lease_lost: bool) -> None:
        """An owner stopped running a job: drop its executor lease rows and give the job lease up."""
        async with self.db.write() as conn:
            await conn.execute(
                delete(executor_leases).where(
                    and_(executor_leases.c.job_id == job_id, executor_leases.c.incarnation == fence.incarnation)
                )
            )
            if not lease_lost:
                await leases.release(conn, job_id, fence, now_ms=self.clock(), graceful=graceful)

    # ------------------------------------------------------------ other streams

    async def append_system(self, new_events: Sequence[NewEvent]) -> list[Event]:
        """Append node and audit events to the `system` stream."""

        async def events(conn: AsyncConnection) -> Sequence[NewEvent]:
            return new_events

        return await self.append_with(ev.SYSTEM_STREAM, events)

    async def append_with(
        self,
        stream_id: str,
        write: Callable[[AsyncConnection], Awaitable[Sequence[NewEvent]]],
        marker: tuple[str, str | None] | None = None,
    ) -> list[Event]:
        """Run `write` and append the events it returns to `stream_id`, in one transaction.

        For streams with no projection row (`system`): `write` changes the operational rows it
        owns and says what to record. The whole transaction runs again while another writer
        takes the stream's next sequence first. `marker` (command id, request digest) marks the
        first event.
        """

        async def attempt() -> list[Event]:
            async with self.db.write() as conn:
                new_events = await write(conn)
                return await self._append_other(conn, stream_id, new_events, marker) if new_events else []

        recorded = await retried(attempt, stream_id)
        lifecycle.committed(stream_id, recorded)
        return recorded

    async def _append_other(
        self,
        conn: AsyncConnection,
        stream_id: str,
        new_events: Sequence[NewEvent],
        marker: tuple[str, str | None] | None = None,
    ) -> list[Event]:
        """Append to a stream with no projection row; `marker` (command id, request digest) marks the first event."""
        head = await event_store.stream_head(conn, stream_id)
        sealed = event_store.seal(stream_id, None, head, new_events, self.clock())
        if marker is None:
            return await event_store.insert_sealed(conn, sealed)
        ids = [marker[0] if i == 0 else None for i in range(len(sealed))]
        digests = [marker[1] if i == 0 else None for i in range(len(sealed))]
        return await event_store.insert_sealed(conn, sealed, ids, digests)

    async def scan_bundle(self, version: BundleVersion, node: str) -> list[Event]:
        """Register or update a bundle found by the startup scan (never over an uploaded version)."""

        def decision(view: dict[str, Any] | None) -> list[NewEvent]:
            if from_upload(view):
                log.info(
                    "bundle directory %s not registered: bundle %s runs an uploaded version",
                    version.path, version.bundle_id,
                )
            return decide_scan(view, version, node)

        return await self._bundle_command(version.bundle_id, decision)

    async def discover_bundle(self, version: BundleVersion, reason: str, node: str) -> list[Event]:
        """Register a bundle directory found after start (SPEC C.2.5); nothing if the id is registered."""
        return await self._bundle_command(
            version.bundle_id, lambda view: decide_discovery(view, version, reason, node)
        )

    async def upload_bundle(self, version: BundleVersion, archive: bytes, expanded_bytes: int, node: str) -> list[Event]:
        """Store an uploaded version's archive and record it (SPEC C.2.2), in one transaction.

        The archive row is written even when no event is (its fingerprint is the current
        version's, from a directory): the upload's `bundle_path` must name a stored version.
        """

        async def store(conn: AsyncConnection) -> None:
            await archives.insert(
                conn,
                fingerprint=version.fingerprint,
                bundle_id=version.bundle_id,
                manifest=version.manifest,
                payload_files=list(version.payload_files),
                archive=archive,
                expanded_bytes=expanded_bytes,
                created_at=format_ms(self.clock()),
            )

        return await self._bundle_command(
            version.bundle_id, lambda view: decide_upload(view, version, node), first=store
        )

    async def reload_bundle(
        self,
        bundle_id: str,
        *,
        version: BundleVersion | None,
        fingerprint: str | None,
        errors: list[str],
        reason: str,
        node: str,
    ) -> list[Event]:
        """Record the outcome of a reload (SPEC §9.5); no event when nothing changed."""

        def decision(view: dict[str, Any] | None) -> list[NewEvent]:
            assert view is not None
            return decide_reload(
                view, version=version, fingerprint=fingerprint, errors=errors, reason=reason, node=node
            )

        return await self._bundle_command(bundle_id, decision)

    async def _bundle_command(
        self,
        bundle_id: str,
        decision: Callable[[dict[str, Any] | None], list[NewEvent]],
        first: Callable[[AsyncConnection], Awaitable[None]] | None = None,
    ) -> list[Event]:
        stream_id = ev.bundle_stream(bundle_id)

        async def attempt() -> list[Event]:
            async with self.db.write() as conn:
                if first is not None:
                    await first(conn)
                return await self._bundle_in(conn, bundle_id, stream_id, decision)

        recorded = await retried(attempt, stream_id)
        lifecycle.committed(stream_id, recorded)
        return recorded

    async def _bundle_in(
        self,
        conn: AsyncConnection,
        bundle_id: str,
        stream_id: str,
        decision: Callable[[dict[str, Any] | None], list[NewEvent]],
    ) -> list[Event]:
        query = select(bundles).where(bundles.c.bundle_id == bundle_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = (await conn.execute(query)).first()
        view = None if row is None else json.loads(row.view)
        new_events = decision(view)
        if not new_events:
            return []
        head = StreamHead() if row is None else StreamHead(row.last_sequence, row.last_hash, row.last_timestamp)
        sealed = event_store.seal(stream_id, None, head, new_events, self.clock())
        for event in sealed:
            view = project_bundle(view, event)
        values = {
            "view": canonical_json(view),
            "last_sequence": sealed[-1].sequence,
            "last_hash": sealed[-1].hash,
            "last_timestamp": sealed[-1].timestamp,
        }
        try:
            if row is None:
                await conn.execute(insert(bundles).values(bundle_id=bundle_id, **values))
            else:
                await conn.execute(update(bundles).where(bundles.c.bundle_id == bundle_id).values(**values))
        except IntegrityError as exc:
            raise ConcurrencyConflict(stream_id) from exc
        return await event_store.insert_sealed(conn, sealed)

    # ------------------------------------------------------------ cleanup

    async def cleanup(
        self,
        *,
        include_live: bool,
        older_than: int | None,
        node: str,
        idempotency_key: str | None = None,
        request_sha256: str | None = None,
    ) -> Cleaned:
        """Delete terminal (or all) jobs, each with its `jobs_cleaned` audit event (SPEC §11).

        With an Idempotency-Key (SPEC C.5.9, scoped to the system stream) each audit event carries
        the command id `key:<key> <job_id>` (a key has no space): a retry answers the jobs the
        key deleted before, deletes only what is left (a first call cut short finishes), and
        never deletes or audits a job twice.
        """
        prefix = None if idempotency_key is None else f"key:{idempotency_key} "
        earlier: list[str] = []
        if prefix is not None:
            async with self.db.read() as conn:
                found = await event_store.commands_with_prefix(conn, ev.SYSTEM_STREAM, prefix)
            if any(digest != request_sha256 for _, digest in found):
                raise IdempotencyMismatch(idempotency_key)
            earlier = [job_id for event, _ in found for job_id in event.payload["job_ids"]]
        cutoff = None if older_than is None else self.clock() - older_than * 1000
        deleted: list[str] = []
        for job_id in await self._cleanup_candidates(include_live, cutoff):
            if include_live:
                with contextlib.suppress(Rejected):  # already terminal, or gone meanwhile
                    await self.execute(job_id, CancelJob(CANCELLED_BY_CLEANUP))
            # With `all`, the age was judged when the candidates were chosen: the cancel just
            # appended moved updated_at to now and must not save the job from deletion.
            recheck = None if include_live else cutoff
            marker = None if prefix is None else (f"{prefix}{job_id}", request_sha256)
            if await self._delete_job(job_id, include_live, recheck, older_than, node, marker):
                deleted.append(job_id)
        return Cleaned(sorted({*earlier, *deleted}), replayed=bool(earlier))

    async def _cleanup_candidates(self, include_live: bool, cutoff: int | None) -> list[str]:
        query = select(jobs.c.job_id).order_by(jobs.c.job_id)
        if not include_live:
            query = query.where(jobs.c.status.in_(sorted(ev.TERMINAL_STATUSES)))
        if cutoff is not None:
            query = query.where(jobs.c.updated_at <= format_ms(cutoff))
        async with self.db.read() as conn:
            return [r.job_id for r in await conn.execute(query)]

    async def _delete_job(
        self,
        job_id: str,
        include_live: bool,
        cutoff: int | None,
        older_than: int | None,
        node: str,
        marker: tuple[str, str | None] | None = None,
    ) -> bool:

        async def delete_and_audit(conn: AsyncConnection) -> list[NewEvent]:
            job = await projector.load_job(conn, job_id, lock=True)
            if job is None or (not include_live and not job.terminal):
                return []
            if cutoff is not None and job.updated_at > format_ms(cutoff):
                return []
            await conn.execute(delete(events).where(events.c.stream_id == job_id))
            await conn.execute(delete(agents).where(agents.c.job_id == job_id))
            await conn.execute(delete(jobs).where(jobs.c.job_id == job_id))
            await leases.drop_job(conn, job_id)
            audit = {
                "job_ids": [job_id],
                "event_counts": {job_id: job.last_sequence},
                "last_hashes": {job_id: job.last_hash},
                "statuses": {job_id: job.status},
                "requested_all": include_live,
                "older_than": older_than,
                "node": node,
            }
            return [NewEvent(ev.JOBS_CLEANED, audit)]

        recorded = await self.append_with(ev.SYSTEM_STREAM, delete_and_audit, marker)
        if recorded:
            self._tell_listeners(ev.SYSTEM_STREAM, recorded)
        return bool(recorded)


class NodeRegistry:
    """Node lifecycle writes: the operational row and its `system` audit event in one transaction."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def register(self, row: NodeRow, payload: dict[str, Any]) -> None:
        """Upsert the node row and append `node_registered`."""
        await self._with_event(lambda conn: nodes_store.upsert(conn, row), ev.NODE_REGISTERED, payload)

    async def stopped(self, name: str, incarnation: str) -> None:
        """Mark the node stopped and append `node_stopped` (not if a newer incarnation owns the name)."""
        now = self.service.clock()
        payload = {"node": name, "incarnation": incarnation}
        await self._with_event(
            lambda conn: nodes_store.mark_stopped(conn, name, incarnation, now), ev.NODE_STOPPED, payload
        )

    async def expire(self, detected_by: str, ttl_ms: int) -> list[str]:
        """Mark nodes with an expired heartbeat lost, one `node_lost` each; return their names."""
        async with self.service.db.read() as conn:
            if not await nodes_store.needs_maintenance(conn, self.service.clock(), ttl_ms):
                return []

        async def expire_and_audit(conn: AsyncConnection) -> list[NewEvent]:
            lost = await nodes_store.expire(conn, self.service.clock(), ttl_ms)
            return [
                NewEvent(
                    ev.NODE_LOST,
                    {
                        "node": n["node"],
                        "incarnation": n["incarnation"],
                        "last_heartbeat_at": format_ms(n["last_heartbeat_ms"]),
                        "detected_by": detected_by,
                    },
                )
                for n in lost
            ]

        recorded = await self.service.append_with(ev.SYSTEM_STREAM, expire_and_audit)
        return [event.payload["node"] for event in recorded]

    async def _with_event(
        self, write: Callable[[AsyncConnection], Awaitable[Any]], type_: str, payload: dict[str, Any]
    ) -> None:

        async def write_and_audit(conn: AsyncConnection) -> list[NewEvent]:
            if await write(conn) is False:
                return []  # the row belongs to another incarnation: nothing of ours to record
            return [NewEvent(type_, payload)]

        await self.service.append_with(ev.SYSTEM_STREAM, write_and_audit)


class BundleRegistry:
    """Bundle scans and reloads: read the directory, then record the outcome through the service."""

    def __init__(self, service: Service, settings: Settings, node: str) -> None:
        self.service = service
        self.settings = settings
        self.node = node
        self._reported: set[str] = set()

    def _overrides(self) -> dict[str, Any]:
        return {
            "reload_mode_override": self.settings.bundle_reload_mode,
            "reload_interval_override": self.settings.bundle_reload_interval_seconds,
        }

    async def scan(self) -> list[str]:
        """Startup scan of MIRROR_NEURON_BUNDLES_DIR (SPEC §9.2); returns the log lines of skipped dirs."""
        root = self.settings.bundles_dir
        if root is None:
            return []
        candidates, problems = await asyncio.to_thread(scanner.scan_bundles_dir, root, **self._overrides())
        for candidate in candidates:
            await self.service.scan_bundle(_version(candidate), self.node)
        return problems

    async def discover(self, registered: set[str]) -> list[Event]:
        """Register the directories whose graph_id is not registered yet (SPEC C.2.5), reason `interval_scan`."""
        root = self.settings.bundles_dir
        if root is None:
            return []
        candidates, problems = await asyncio.to_thread(
            scanner.scan_bundles_dir, root, **self._overrides(), registered=frozenset(registered)
        )
        for line in problems:
            if line not in self._reported:  # a broken directory is reported once, not every tick
                self._reported.add(line)
                log.warning("%s", line)
        recorded: list[Event] = []
        for candidate in candidates:
            recorded += await self.service.discover_bundle(_version(candidate), "interval_scan", self.node)
        return recorded

    async def reload(self, bundle_id: str, path: str, reason: str) -> tuple[list[Event], list[str] | None]:
        """Re-read a registered bundle (SPEC §9.5); returns the events and the errors if rejected."""
        found = await asyncio.to_thread(
            scanner.read_bundle_dir, Path(path), expected_bundle_id=bundle_id, **self._overrides()
        )
        if isinstance(found, scanner.BundleCandidate):
            recorded = await self.service.reload_bundle(
                bundle_id, version=_version(found), fingerprint=found.fingerprint, errors=[], reason=reason, node=self.node
            )
            return recorded, None
        recorded = await self.service.reload_bundle(
            bundle_id, version=None, fingerprint=found.fingerprint, errors=found.errors, reason=reason, node=self.node
        )
        return recorded, found.errors


def _version(candidate: scanner.BundleCandidate) -> BundleVersion:
    return BundleVersion(
        bundle_id=candidate.bundle_id,
        path=candidate.path,
        fingerprint=candidate.fingerprint,
        manifest=candidate.manifest,
        reload=candidate.reload,
        payload_files=tuple(candidate.payload_files),
    )
