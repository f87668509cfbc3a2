"""Fold of events == projection, and rebuild == incremental (DESIGN §2 invariant 1, §8).

Two layers. The pure one lets Hypothesis drive random operation sequences through `decide`
into an in-memory log and checks, after every command, that folding the whole log equals the
projection built one event at a time, and that the runtime's view of the same log (mailboxes,
in-flight messages, states) agrees with the projection. The store one drives seeded random
walks through `Service.execute` on both backends and checks the live rows against the log,
`verify`, `rebuild`, and that `verify` notices a tampered row.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from app.domain import events as ev
from app.domain.canonical import format_ms
from app.domain.events import Event, NewEvent
from app.domain.job import (
    FENCED_COMMANDS,
    AdmitJob,
    CancelJob,
    Command,
    CommitStep,
    Completion,
    DeliverExternal,
    FailJob,
    FailStep,
    FinishRecovery,
    PauseJob,
    RecordAgentEvents,
    Rejected,
    ResumeJob,
    StartJob,
    StartRecovery,
    SubmitJob,
    decide,
    submitted_payload,
)
from app.domain.projection import JobProjection, fold, project
from app.domain.runtime_state import JobRuntime, fold_runtime
from app.service import Service
from app.store import event_store, leases, projector
from app.store.database import Database
from app.store.leases import Fence, LeaseLost
from app.store.projector import agent_to_row, job_to_row
from app.store.rebuild import rebuild, verify
from app.store.tables import agents, jobs

PURE_JOB = "walk_v1-1711623600000-0123456789ab"
T0 = 1_711_623_600_000
AGENTS = ("router", "exec", "sink")


def manifest(*, daemon: bool = False) -> dict[str, Any]:
    """A normalised manifest: a router entrypoint, an executor and an aggregator."""
    node: dict[str, Any] = {
        "tool_bindings": [],
        "retry_policy": {},
        "checkpoint_policy": {},
        "spawn_policy": {},
        "config": {},
    }
    return {
        "manifest_version": "1.0",
        "graph_id": "walk_v1",
        "job_name": "walk",
        "daemon": daemon,
        "metadata": {},
        "nodes": [
            {**node, "node_id": "router", "agent_type": "router", "type": "generic", "role": "root"},
            {**node, "node_id": "exec", "agent_type": "executor", "type": "generic", "role": None},
            {**node, "node_id": "sink", "agent_type": "aggregator", "type": "generic", "role": None},
        ],
        "edges": [],
        "entrypoints": ["router"],
        "initial_inputs": {},
        "policies": {
            "placement_policy": "local",
            "recovery_mode": "local_restart",
            "max_agent_restart_attempts": 2,
        },
    }


class Walk:
    """Turns an abstract operation into a command that fits the job's runtime view (or None)."""

    def __init__(self) -> None:
        self.ids = 0

    def message(self, job_id: str, to: str, body: Any = None) -> dict[str, Any]:
        self.ids += 1
        envelope = {
            "message_id": f"m{self.ids:05d}",
            "job_id": job_id,
            "from": "walk",
            "to": to,
            "type": "t",
            "class": "event",
        }
        return {"envelope": envelope, "headers": {}, "body": body, "artifacts": [], "stream": None}

    def command(self, op: str, a: int, b: int, job: JobRuntime) -> Command | None:
        agent_id = AGENTS[a % len(AGENTS)]
        other = AGENTS[(a + 1) % len(AGENTS)]
        match op:
            case "admit":
                return AdmitJob("n1")
            case "start":
                return StartJob(
                    "n1", tuple(self.message(job.job_id, "router", {"seed": i}) for i in range(a % 3))
                )
            case "pause":
                return PauseJob()
            case "resume":
                return ResumeJob()
            case "cancel":
                return CancelJob()
            case "external":
                return DeliverExternal(agent_id, self.message(job.job_id, agent_id, {"b": b}))
            case "receive":
                return self._receive(job, agent_id)
            case "commit":
                return self._commit(job, agent_id, other, b)
            case "executor":
                return RecordAgentEvents("exec", (_executor_event(b, self.ids),))
            case "fail_step":
                return FailStep(agent_id, "step failed", {"error": "step failed"})
            case "recover":
                return StartRecovery(f"n{b + 2}", "n1", "lease_expired" if b % 2 == 0 else "node_shutdown")
            case "finish_recovery":
                return FinishRecovery(job.recovery_count, tuple(job.agents), manual=b == 0)
            case "fail_job":
                return FailJob(ev.JOB_COORDINATOR if b % 2 else agent_id, "recovery failed")
        raise AssertionError(op)

    def _receive(self, job: JobRuntime, agent_id: str) -> Command | None:
        agent = job.agents.get(agent_id)
        if agent is None or not agent.queue or agent.head_received:
            return None
        return RecordAgentEvents(agent_id, (_received(agent_id, agent.queue[0]),))

    def _commit(self, job: JobRuntime, agent_id: str, other: str, b: int) -> Command | None:
        agent = job.agents.get(agent_id)
        if agent is None or not agent.queue:
            return None
        head = agent.queue[0]
        step: list[NewEvent] = [] if agent.head_received else [_received(agent_id, head)]
        if b == 1:
            emitted = self.message(job.job_id, other, {"from": agent_id})
            step.append(
                NewEvent(
                    ev.MESSAGE_DELIVERED, {"message": emitted, "route": "direct", "edge_id": None}, other
                )
            )
        elif b == 2:
            ghost = self.message(job.job_id, "ghost")
            step.append(
                NewEvent(ev.DEAD_LETTER, {"message": ghost, "reason": "unknown agent ghost"}, "ghost")
            )
            step.append(NewEvent("progress", {"n": agent.processed}, agent_id))
        completion = Completion(agent_id, {"done": agent.processed}) if b == 3 else None
        state = {"processed": agent.processed + 1}
        return CommitStep(
            agent_id, head["envelope"]["message_id"], agent.processed, state, tuple(step), completion
        )


def _received(agent_id: str, message: dict[str, Any]) -> NewEvent:
    env = message["envelope"]
    return NewEvent(
        ev.AGENT_MESSAGE_RECEIVED,
        {"message_id": env["message_id"], "from": env["from"], "to": env["to"], "type": env["type"]},
        agent_id,
    )


def _executor_event(b: int, n: int) -> NewEvent:
    if b % 3 == 0:
        return NewEvent(
            ev.EXECUTOR_LEASE_ACQUIRED,
            {"lease_id": f"l{n}", "pool": "default", "slots": 1, "queue_wait_ms": 0},
            "exec",
        )
    if b % 3 == 1:
        payload = {
            "attempt": 1,
            "max_attempts": 2,
            "error": f"command exited with status {n % 5 + 1}",
            "exit_code": n % 5 + 1,
            "transient": False,
            "retry_in_ms": None,
            "sandbox_name": f"sbx-{n}",
            "pool": "default",
        }
        return NewEvent(ev.EXECUTOR_ATTEMPT_FAILED, payload, "exec")
    payload = {
        "sandbox_name": f"sbx-{n}",
        "exit_code": 0,
        "attempts": 1,
        "lease_id": f"l{n}",
        "pool": "default",
    }
    return NewEvent(ev.SANDBOX_JOB_COMPLETED, payload, "exec")


def assert_consistent(job_id: str, log: Sequence[Event], state: JobProjection) -> None:
    """The projection equals the fold of the log and agrees with the runtime's view of it."""
    assert fold(log) == state
    assert [e.sequence for e in log] == list(range(1, len(log) + 1))
    terminal = [i for i, e in enumerate(log) if e.type in ev.TERMINAL_TYPES]
    assert terminal in ([], [len(log) - 1])
    runtime = fold_runtime(job_id, log)
    assert (runtime.status, runtime.recovery_count) == (state.job.status, state.job.recovery_count)
    for agent_id, view in state.agents.items():
        agent = runtime.agents[agent_id]
        assert view.processed_messages == agent.processed
        assert view.state == agent.state
        assert view.inflight_message_id == agent.inflight_message_id
        assert len(agent.queue) == view.mailbox_depth + (1 if view.inflight_message_id is not None else 0)


# ---------------------------------------------------------------- pure layer (Hypothesis)

# Weighted by repetition: the operations that end a job are rare, so that walks get long.
PURE_OPS = (
    *["commit"] * 8,
    *["receive"] * 4,
    *["external"] * 4,
    *["executor"] * 3,
    *["admit"] * 2,
    *["start"] * 2,
    "pause",
    "resume",
    "recover",
    "finish_recovery",
    "finish_recovery",
    "cancel",
    "fail_step",
    "fail_job",
)
# The lifecycle prefix is likely but not certain, so that rejections are exercised too.
PREFIX = [("admit", 0, 0), ("start", 2, 0)]


def _seal(log: list[Event], new_events: Sequence[NewEvent]) -> list[Event]:
    start = len(log) + 1
    return [
        Event(
            seq,
            PURE_JOB,
            seq,
            f"e{seq}",
            e.type,
            format_ms(T0 + seq * 7),
            PURE_JOB,
            e.agent_id,
            e.payload,
            f"h{seq}",
        )
        for seq, e in enumerate(new_events, start=start)
    ]


@settings(max_examples=25, deadline=None)
@given(
    prefix=st.booleans(),
    daemon=st.booleans(),
    ops=st.lists(
        st.tuples(st.sampled_from(PURE_OPS), st.integers(0, 2), st.integers(0, 3)), min_size=20, max_size=80
    ),
)
def test_fold_of_the_log_equals_the_incremental_projection(
    prefix: bool, daemon: bool, ops: list[tuple[str, int, int]]
) -> None:
    walk = Walk()
    payload = submitted_payload(
        manifest=manifest(daemon=daemon), bundle=None, idempotency_key=None, request_sha256="0" * 64
    )
    log: list[Event] = _seal([], decide(None, SubmitJob(payload), PURE_JOB).events)
    state: JobProjection | None = fold(log)
    assert state is not None
    for op, a, b in [*(PREFIX if prefix else []), *ops]:
        command = walk.command(op, a, b, fold_runtime(PURE_JOB, log))
        if command is None:
            continue
        try:
            decision = decide(state, command, PURE_JOB)
        except Rejected:
            continue
        sealed = _seal(log, decision.events)
        for event in sealed:
            state = project(state, event)
        log.extend(sealed)
        assert state is not None
        assert_consistent(PURE_JOB, log, state)


# ---------------------------------------------------------------- store layer (both backends)

STORE_OPS = (
    "admit",
    "start",
    "external",
    "receive",
    "commit",
    "executor",
    "pause",
    "resume",
    "cancel",
    "fail_step",
)
STORE_WEIGHTS = (3, 3, 4, 4, 8, 2, 1, 1, 0.4, 0.2)
# Mostly move a pending or queued job on, so that the walks spend their steps on running jobs.
LIFECYCLE = {"pending": "admit", "queued": "start"}
SEEDS = (1, 2, 3, 4, 5)
STEPS = 80


async def _random_walk(db: Database, service: Service, seed: int) -> list[str]:
    rng = random.Random(seed)
    walk = Walk()
    job_ids: list[str] = []
    fences: dict[str, Fence] = {}
    for _ in range(STEPS):
        if not job_ids or (len(job_ids) < 3 and rng.random() < 0.12):
            key = f"key-{seed}-{len(job_ids)}" if rng.random() < 0.5 else None
            submitted = await service.submit(
                manifest=manifest(daemon=rng.random() < 0.3),
                bundle=None,
                idempotency_key=key,
                request_sha256=f"{seed:064x}",
            )
            job_ids.append(submitted.job_id)
            continue
        job_id = rng.choice(job_ids)
        async with db.read() as conn:
            runtime = fold_runtime(job_id, await event_store.read_stream(conn, job_id))
        op = rng.choices(STORE_OPS, STORE_WEIGHTS)[0]
        if runtime.status in LIFECYCLE and rng.random() < 0.7:
            op = LIFECYCLE[runtime.status]
        if op == "start" and job_id not in fences:
            async with db.write() as conn:
                fence = await leases.claim(
                    conn,
                    job_id,
                    node="n1",
                    incarnation=f"inc-{seed}",
                    now_ms=service.clock(),
                    ttl_ms=3_600_000,
                )
            if fence is not None:
                fences[job_id] = fence
        command = walk.command(op, rng.randrange(3), rng.randrange(6), runtime)
        fenced = isinstance(command, FENCED_COMMANDS)
        if command is None or (fenced and job_id not in fences):
            continue
        with contextlib.suppress(Rejected, LeaseLost):  # rejections are part of the walk
            await service.execute(job_id, command, fences[job_id] if fenced else None)
    return job_ids


async def _rows(db: Database) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    async with db.read() as conn:
        job_rows = [dict(r._mapping) for r in await conn.execute(select(jobs).order_by(jobs.c.job_id))]
        agent_rows = [
            dict(r._mapping)
            for r in await conn.execute(select(agents).order_by(agents.c.job_id, agents.c.agent_id))
        ]
    return job_rows, agent_rows


async def _expected_rows(
    db: Database, job_ids: Sequence[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    job_rows: list[dict[str, Any]] = []
    agent_rows: list[dict[str, Any]] = []
    async with db.read() as conn:
        for job_id in sorted(job_ids):
            stream = await event_store.read_stream(conn, job_id)
            projection = fold(stream)
            assert projection is not None
            assert_consistent(job_id, stream, projection)
            # submitted_position: the store's order column, the position of the job's first event.
            job_rows.append({**job_to_row(projection.job), "submitted_position": stream[0].position})
            agent_rows += [agent_to_row(a) for a in projection.agents.values()]
    agent_rows.sort(key=lambda r: (r["job_id"], r["agent_id"]))
    return job_rows, agent_rows


async def test_rebuild_equals_incremental_projection(db: Database, service: Service) -> None:
    job_ids: list[str] = []
    for seed in SEEDS:
        job_ids += await _random_walk(db, service, seed)

    live = await _rows(db)
    assert live == await _expected_rows(db, job_ids)
    statuses = {r["status"] for r in live[0]}
    assert statuses & {"running", "paused"}, statuses  # the walks got past bootstrap
    assert any(r["processed_messages"] > 0 for r in live[1])
    assert await verify(db) == []
    async with db.read() as conn:  # the views the write path loads are the views the fold computes
        for job_id in job_ids:
            folded = fold(await event_store.read_stream(conn, job_id))
            assert folded is not None
            assert await projector.load_job(conn, job_id, lock=False) == folded.job
            assert await projector.load_agents(conn, job_id, folded.agents) == dict(folded.agents)

    replayed = await rebuild(db)
    async with db.read() as conn:
        assert replayed == len(await event_store.read_job_events(conn))
    assert await _rows(db) == live
    assert await verify(db) == []

    victim = next(r["job_id"] for r in live[0] if r["status"] != "failed")
    async with db.write() as conn:
        await conn.execute(
            text("UPDATE jobs SET status = 'failed' WHERE job_id = :job_id"), {"job_id": victim}
        )
    differences = await verify(db)
    assert len(differences) == 1
    assert differences[0].startswith(f'jobs[{victim}].status: live="failed"')

    await rebuild(db)
    assert await _rows(db) == live
    assert await verify(db) == []
