"""The one body of the write path: a batch of commands decided and appended in one transaction.

BEGIN → load the job rows (locked) and the agent rows the commands need → check each fence →
decide each command against the state the previous ones left → seal the events → fold them
into the projection → write the projection → take positions and insert the events → COMMIT.
A lone command is a batch of one. Queueing, retries and answers are `group_commit.py`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.domain.events import Event
from app.domain.job import (
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
)
from app.domain.projection import JobProjection, fold
from app.ops.origin import NOBODY, Origin
from app.service.outcomes import Outcome
from app.store import event_store, leases, projector
from app.store.database import Connection, is_database_error
from app.store.event_store import ConcurrencyConflict, StreamHead
from app.store.leases import Fence

Result = Outcome | BaseException


@dataclass(eq=False)
class Pending:
    """A command waiting for its turn in a group commit (after `after`, if it is part of a chain)."""

    job_id: str
    command: Command
    fence: Fence | None
    future: asyncio.Future[Outcome]
    after: Pending | None = None
    origin: Origin = NOBODY  # the caller's request id and trace context (app/ops/origin.py)
    command_id: str | None = None
    request_sha256: str | None = None

    def ids_of(self, sealed: list[Event]) -> list[str | None]:
        """The command id column of this command's sealed events: its id on the first only."""
        return [self.command_id if i == 0 else None for i in range(len(sealed))]

    def digests_of(self, sealed: list[Event]) -> list[str | None]:
        return [self.request_sha256 if i == 0 else None for i in range(len(sealed))]


def chain_broken(pending: Pending, settled: dict[Pending, Result]) -> bool:
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


def chain_dropped() -> Rejected:
    return Rejected("dropped", "the command it follows appended nothing")


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


@dataclass
class _Loaded:
    """What the transaction read: the projections before it (`before`), as the commands leave them (`states`)."""

    before: dict[str, JobProjection | None]
    states: dict[str, JobProjection | None]
    lease_rows: dict[str, Any]
    settled: dict[Pending, Result] = field(default_factory=dict)


async def decide_and_append(conn: Connection, batch: list[Pending], clock: Callable[[], int]) -> list[Result]:
    """Each command's Outcome (its recorded events) or its own failure (Rejected, LeaseLost, ...).

    A database error or a conflict raises: the whole transaction is spoiled.
    """
    loaded = await _load(conn, batch)
    results: list[Result] = []
    sealed_of: list[list[Event]] = []
    for p in batch:
        try:
            sealed = await _decide_one(conn, p, loaded, clock)
            results.append(Outcome(sealed, loaded.states.get(p.job_id)))
        except Exception as exc:
            if isinstance(exc, ConcurrencyConflict) or is_database_error(exc):
                raise
            sealed = []
            results.append(exc)  # Rejected, LeaseLost, or a failure of this command alone
        loaded.settled[p] = results[-1]
        sealed_of.append(sealed)
    return await _write(conn, batch, loaded, results, sealed_of)


async def _load(conn: Connection, batch: list[Pending]) -> _Loaded:
    """One query per table: the job rows (locked), the agent rows the commands name, the lease rows."""
    jobs_found = await projector.load_jobs(
        conn, [p.job_id for p in batch if _reads_its_job(p.command)], lock=True
    )
    wanted: dict[str, set[str]] = {}
    for p in batch:
        wanted.setdefault(p.job_id, set()).update(_command_agents(p.command))
    agents_found = await projector.load_agents_of(conn, {j: a for j, a in wanted.items() if j in jobs_found})
    fenced = [p.job_id for p in batch if p.fence is not None]
    lease_rows = await leases.lease_rows(conn, fenced) if fenced else {}
    before: dict[str, JobProjection | None] = {
        j: JobProjection(job, agents_found.get(j, {})) for j, job in jobs_found.items()
    }
    return _Loaded(before, dict(before), lease_rows)


async def _decide_one(conn: Connection, p: Pending, loaded: _Loaded, clock: Callable[[], int]) -> list[Event]:
    """Decide one command against the state its job is in now; its sealed events (none for a no-op)."""
    if chain_broken(p, loaded.settled):
        raise chain_dropped()
    state = loaded.states.get(p.job_id)
    now = clock()
    if p.fence is not None:
        leases.check_fence_row(loaded.lease_rows.get(p.job_id), p.job_id, p.fence, now)
    decision = decide(state, p.command, p.job_id)
    if not decision.events:
        return []
    if state is not None:
        missing = {e.agent_id for e in decision.events if e.agent_id} - set(state.agents)
        if missing:
            state = await _load_missing(conn, p.job_id, missing, state, loaded)
    job = None if state is None else state.job
    head = StreamHead() if job is None else StreamHead(job.last_sequence, job.last_hash, job.last_timestamp)
    sealed = event_store.seal(p.job_id, p.job_id, head, decision.events, now)
    loaded.states[p.job_id] = fold(sealed, state)
    return sealed


async def _load_missing(
    conn: Connection, job_id: str, missing: set[str], state: JobProjection, loaded: _Loaded
) -> JobProjection:
    """Agent rows an event names that the load did not read (a message to an agent of another command)."""
    found = await projector.load_agents(conn, job_id, missing)
    first = loaded.before[job_id]
    if first is not None:
        loaded.before[job_id] = JobProjection(first.job, {**found, **first.agents})
    return JobProjection(state.job, {**state.agents, **found})


async def _write(
    conn: Connection,
    batch: list[Pending],
    loaded: _Loaded,
    results: list[Result],
    sealed_of: list[list[Event]],
) -> list[Result]:
    """One write per table: the changed projections, the dropped leases, then the events (last: positions)."""
    changed = sorted({p.job_id for p, sealed in zip(batch, sealed_of, strict=True) if sealed})
    if not changed:
        return results
    final = {j: loaded.states[j] for j in changed}
    await projector.save_many(conn, [(loaded.before.get(j), s) for j, s in final.items() if s is not None])
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
