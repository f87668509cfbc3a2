"""Given events / when command / then events or rejection (SPEC §3.3), and the §4.6 projection.

"Given" states are built the way the store builds them: recorded events folded through
`fold`. Every command is checked against every status of §3.1 from one table, then the
rows that need more than a status (recovery numbering, the processed guard, completion,
unknown agents, manual recovery) get their own cases.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from app.domain import events as ev
from app.domain.canonical import format_ms
from app.domain.events import Event, NewEvent
from app.domain.job import (
    AWAITING_MANUAL_RECOVERY,
    CANCELLED_BY_CLEANUP,
    CANCELLED_BY_OPERATOR,
    PAUSED_BY_OPERATOR,
    RESUMED_BY_OPERATOR,
    AdmitJob,
    CancelJob,
    Command,
    CommitStep,
    Completion,
    DeliverExternal,
    FailBootstrap,
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

JOB = "flow_v1-1711623600000-1c50c86dc919"
T0 = 1_711_623_600_000
COORD = ev.JOB_COORDINATOR

# ---------------------------------------------------------------- building the given state


def manifest(
    *, daemon: bool = False, max_restarts: int = 3, recovery_mode: str = "local_restart"
) -> dict[str, Any]:
    """A normalised manifest (SPEC §5.5) with a router entrypoint, an executor and an aggregator."""
    node: dict[str, Any] = {
        "tool_bindings": [],
        "retry_policy": {},
        "checkpoint_policy": {},
        "spawn_policy": {},
        "config": {},
    }
    return {
        "manifest_version": "1.0",
        "graph_id": "flow_v1",
        "job_name": "flow",
        "daemon": daemon,
        "metadata": {},
        "nodes": [
            {**node, "node_id": "router", "agent_type": "router", "type": "generic", "role": "root"},
            {**node, "node_id": "exec", "agent_type": "executor", "type": "stream", "role": None},
            {**node, "node_id": "sink", "agent_type": "aggregator", "type": "reduce", "role": None},
        ],
        "edges": [],
        "entrypoints": ["router"],
        "initial_inputs": {},
        "policies": {
            "placement_policy": "local",
            "recovery_mode": recovery_mode,
            "max_agent_restart_attempts": max_restarts,
        },
    }


def submitted(**kw: Any) -> NewEvent:
    payload = submitted_payload(
        manifest=manifest(**kw),
        bundle={"bundle_id": "flow_v1", "fingerprint": "f" * 64, "path": "/bundles/flow_v1"},
        idempotency_key="key-1",
        request_sha256="a" * 64,
    )
    return NewEvent(ev.JOB_SUBMITTED, payload)


def message(to: str, message_id: str, body: Any = None) -> dict[str, Any]:
    envelope = {
        "message_id": message_id,
        "job_id": JOB,
        "from": "runtime",
        "to": to,
        "type": "init",
        "class": "command",
    }
    return {
        "envelope": envelope,
        "headers": {},
        "body": {} if body is None else body,
        "artifacts": [],
        "stream": None,
    }


def record(new_events: Iterable[NewEvent], *, start: int = 1, step_ms: int = 1000) -> list[Event]:
    """Seal decided events the way the store does, with fake hashes and one timestamp per second."""
    return [
        Event(
            position=seq,
            stream_id=JOB,
            sequence=seq,
            event_id=f"event-{seq}",
            type=e.type,
            timestamp=format_ms(T0 + seq * step_ms),
            job_id=JOB,
            agent_id=e.agent_id,
            payload=e.payload,
            hash=f"hash-{seq}",
        )
        for seq, e in enumerate(new_events, start=start)
    ]


def given(new_events: Sequence[NewEvent]) -> JobProjection:
    state = fold(record(new_events))
    assert state is not None
    return state


def delivered(to: str, mid: str, route: str = "seed") -> NewEvent:
    return NewEvent(ev.MESSAGE_DELIVERED, {"message": message(to, mid), "route": route, "edge_id": None}, to)


def received(agent: str, mid: str) -> NewEvent:
    return NewEvent(ev.AGENT_MESSAGE_RECEIVED, {"message_id": mid, "from": "runtime", "to": agent}, agent)


def processed(agent: str, mid: str, state: Any = None) -> NewEvent:
    return NewEvent(ev.MESSAGE_PROCESSED, {"message_id": mid, "state": state}, agent)


def failed(agent: str, error: str) -> NewEvent:
    return NewEvent(ev.JOB_FAILED, {"reason": error, "result": {"agent_id": agent, "error": error}}, agent)


def recovery_started(attempt: int, cause: str = "lease_expired") -> NewEvent:
    payload = {
        "node": f"n{attempt + 1}",
        "from_node": f"n{attempt}",
        "attempt": attempt,
        "cause": cause,
        "counted": cause == "lease_expired",
    }
    return NewEvent(ev.JOB_RECOVERY_STARTED, payload)


PENDING = [submitted()]
QUEUED = [*PENDING, NewEvent(ev.JOB_QUEUED, {"node": "n1"})]
RUNNING = [
    *QUEUED,
    NewEvent(ev.JOB_SCHEDULED, {"node": "n1"}),
    delivered("router", "seed-1"),
    NewEvent(ev.JOB_RUNNING),
]
PAUSED = [*RUNNING, NewEvent(ev.JOB_PAUSED, {"reason": PAUSED_BY_OPERATOR})]
COMPLETED = [
    *RUNNING,
    received("router", "seed-1"),
    processed("router", "seed-1", {"forwarded": 1}),
    NewEvent(ev.JOB_COMPLETED, {"result": {"agent_id": "router", "output": 1}}, "router"),
]
FAILED = [*RUNNING, failed("exec", "command exited with status 2")]
CANCELLED = [
    *RUNNING,
    NewEvent(
        ev.JOB_CANCELLED, {"reason": CANCELLED_BY_OPERATOR, "result": {"reason": CANCELLED_BY_OPERATOR}}
    ),
]

STAGES: dict[str, list[NewEvent]] = {
    "pending": PENDING,
    "queued": QUEUED,
    "running": RUNNING,
    "paused": PAUSED,
    "completed": COMPLETED,
    "failed": FAILED,
    "cancelled": CANCELLED,
}
TERMINAL = ("completed", "failed", "cancelled")


def test_the_given_stages_have_the_status_they_are_named_after() -> None:
    for status, stage in STAGES.items():
        assert given(stage).job.status == status


# ---------------------------------------------------------------- the commands of the table

SEED_A = message("router", "seed-a", {"n": 1})
SEED_B = message("router", "seed-b", {"n": 2})
EXTERNAL = message("sink", "ext-1", {"hello": "world"})
BOOT_ERROR = "bundle path does not exist on node n1: /bundles/flow_v1"
STEP_ERROR = "command exited with status 2"
RECORDED = (
    received("exec", "m-1"),
    NewEvent(ev.EXECUTOR_LEASE_REQUESTED, {"pool": "default", "slots": 1}, "exec"),
)
EMITTED = NewEvent(
    ev.MESSAGE_DELIVERED, {"message": message("sink", "m-2"), "route": "edge", "edge_id": "e1"}, "sink"
)
ATTEMPT_FAILED = NewEvent(
    ev.EXECUTOR_ATTEMPT_FAILED,
    {
        "attempt": 1,
        "max_attempts": 1,
        "error": STEP_ERROR,
        "exit_code": 2,
        "transient": False,
        "retry_in_ms": None,
        "sandbox_name": "sbx-1",
        "pool": "default",
    },
    "exec",
)
RECOVERED = ("router", "exec", "sink")

COMMANDS: dict[str, Command] = {
    "admit": AdmitJob("n1"),
    "start": StartJob("n1", (SEED_A, SEED_B)),
    "fail_bootstrap": FailBootstrap("n1", COORD, BOOT_ERROR),
    "pause": PauseJob(),
    "resume": ResumeJob(),
    "cancel": CancelJob(),
    "deliver_external": DeliverExternal("sink", EXTERNAL),
    "record_agent_events": RecordAgentEvents("exec", RECORDED),
    "commit_step": CommitStep("router", "seed-1", 0, {"forwarded": 1}, (EMITTED,)),
    "fail_step": FailStep("exec", STEP_ERROR, {"exit_code": 2}, (ATTEMPT_FAILED,)),
    "start_recovery": StartRecovery("n2", "n1", "lease_expired"),
    "finish_recovery": FinishRecovery(1, RECOVERED, manual=False),
    "fail_job": FailJob("exec", "module agent worker is not available"),
}
# Issued by the lease holder (or an admitting node): rejected once the job is terminal (§3.3).
NODE_SIDE = (
    "admit",
    "start",
    "fail_bootstrap",
    "record_agent_events",
    "commit_step",
    "fail_step",
    "start_recovery",
    "finish_recovery",
    "fail_job",
)


@dataclass(frozen=True)
class Reject:
    kind: str
    message: str


Outcome = tuple[NewEvent, ...] | Reject


def dropped(status: str) -> Reject:
    return Reject("dropped", f"job {JOB} is {status}")


def terminal(status: str) -> Reject:
    return Reject("conflict", f"job {JOB} is already in a terminal state ({status})")


NOT_RUNNING = Reject("conflict", f"job {JOB} is not running")
NOT_PAUSED = Reject("conflict", f"job {JOB} is not paused")


def node_side(accepted: dict[str, tuple[NewEvent, ...]]) -> dict[str, Outcome]:
    """Accepted in the given statuses, dropped in the other live ones, terminal conflict after the end."""
    outcomes: dict[str, Outcome] = {s: (terminal(s) if s in TERMINAL else dropped(s)) for s in STAGES}
    outcomes.update(accepted)
    return outcomes


def job_failed(agent: str, error: str, details: dict[str, Any] | None = None) -> NewEvent:
    result: dict[str, Any] = {"agent_id": agent, "error": error}
    if details is not None:
        result["details"] = details
    return NewEvent(ev.JOB_FAILED, {"reason": error, "result": result}, agent)


STARTED = (
    NewEvent(ev.JOB_SCHEDULED, {"node": "n1"}),
    NewEvent(ev.MESSAGE_DELIVERED, {"message": SEED_A, "route": "seed", "edge_id": None}, "router"),
    NewEvent(ev.MESSAGE_DELIVERED, {"message": SEED_B, "route": "seed", "edge_id": None}, "router"),
    NewEvent(ev.JOB_RUNNING, {}),
)
CANCELLED_EVENT = NewEvent(
    ev.JOB_CANCELLED, {"reason": CANCELLED_BY_OPERATOR, "result": {"reason": CANCELLED_BY_OPERATOR}}
)
EXTERNAL_EVENT = NewEvent(
    ev.MESSAGE_DELIVERED, {"message": EXTERNAL, "route": "external", "edge_id": None}, "sink"
)
COMMITTED = (EMITTED, processed("router", "seed-1", {"forwarded": 1}))
STEP_FAILED = (ATTEMPT_FAILED, job_failed("exec", STEP_ERROR, {"exit_code": 2}))
RECOVERY_STARTED = (
    NewEvent(
        ev.JOB_RECOVERY_STARTED,
        {"node": "n2", "from_node": "n1", "attempt": 1, "cause": "lease_expired", "counted": True},
    ),
)
# In RUNNING the router holds its seed, nothing else is queued (values come from the projection).
AGENTS_RECOVERED = tuple(
    NewEvent(ev.AGENT_RECOVERED, {"attempt": 1, "mailbox_depth": depth, "inflight_message_id": None}, agent)
    for agent, depth in (("router", 1), ("exec", 0), ("sink", 0))
)
JOB_FAILED = (job_failed("exec", "module agent worker is not available"),)
LIVE = ("running", "paused")

MATRIX: dict[str, dict[str, Outcome]] = {
    "admit": node_side({"pending": (NewEvent(ev.JOB_QUEUED, {"node": "n1"}),)}),
    "start": node_side({"queued": STARTED}),
    "fail_bootstrap": node_side(
        {"queued": (NewEvent(ev.JOB_SCHEDULED, {"node": "n1"}), job_failed(COORD, BOOT_ERROR))}
    ),
    "pause": {
        s: ((NewEvent(ev.JOB_PAUSED, {"reason": PAUSED_BY_OPERATOR}),) if s == "running" else NOT_RUNNING)
        for s in STAGES
    },
    "resume": {
        s: ((NewEvent(ev.JOB_RESUMED, {"reason": RESUMED_BY_OPERATOR}),) if s == "paused" else NOT_PAUSED)
        for s in STAGES
    },
    "cancel": {
        **{s: (CANCELLED_EVENT,) for s in ("pending", "queued", "running", "paused")},
        "cancelled": (),
        "completed": terminal("completed"),
        "failed": terminal("failed"),
    },
    "deliver_external": {
        "pending": NOT_RUNNING,
        "queued": NOT_RUNNING,
        "running": (EXTERNAL_EVENT,),
        "paused": (EXTERNAL_EVENT,),
        **{s: terminal(s) for s in TERMINAL},
    },
    "record_agent_events": node_side({s: RECORDED for s in LIVE}),
    "commit_step": node_side({s: COMMITTED for s in LIVE}),
    "fail_step": node_side({s: STEP_FAILED for s in LIVE}),
    "start_recovery": node_side({s: RECOVERY_STARTED for s in LIVE}),
    "finish_recovery": node_side({s: AGENTS_RECOVERED for s in LIVE}),
    # A job-level failure is also accepted on a queued job (the code allows it; the spec names
    # only running/paused for recovery errors, and no node issues it before bootstrap).
    "fail_job": node_side({s: JOB_FAILED for s in ("queued", *LIVE)}),
}

CASES = [(name, status, outcome) for name, row in MATRIX.items() for status, outcome in row.items()]


def test_the_matrix_covers_every_command_and_status() -> None:
    assert set(MATRIX) == set(COMMANDS)
    assert all(set(row) == set(STAGES) for row in MATRIX.values())


def then(state: JobProjection | None, command: Command, outcome: Outcome) -> None:
    if isinstance(outcome, Reject):
        with pytest.raises(Rejected) as caught:
            decide(state, command, JOB)
        assert (caught.value.kind, caught.value.message) == (outcome.kind, outcome.message)
        assert str(caught.value) == outcome.message
    else:
        assert decide(state, command, JOB).events == outcome


@pytest.mark.parametrize(("name", "status", "outcome"), CASES, ids=[f"{n}-{s}" for n, s, _ in CASES])
def test_command_table(name: str, status: str, outcome: Outcome) -> None:
    then(given(STAGES[status]), COMMANDS[name], outcome)


@pytest.mark.parametrize("status", TERMINAL)
@pytest.mark.parametrize("name", NODE_SIDE)
def test_first_terminal_event_wins(status: str, name: str) -> None:
    """After job_completed, job_failed or job_cancelled every node-side command is rejected."""
    state = given(STAGES[status])
    assert state.job.last_event is not None and state.job.last_event.startswith(f"job_{status}")
    then(state, COMMANDS[name], terminal(status))


@pytest.mark.parametrize("status", TERMINAL)
def test_a_late_completion_after_a_terminal_event_is_never_recorded(status: str) -> None:
    late = CommitStep("router", "seed-1", 0, {}, (), Completion("router", "late"))
    then(given(STAGES[status]), late, terminal(status))


# ---------------------------------------------------------------- submit and unknown jobs


def test_submit_on_an_empty_stream_records_job_submitted() -> None:
    payload = submitted().payload
    assert decide(None, SubmitJob(payload), JOB).events == (NewEvent(ev.JOB_SUBMITTED, payload),)


@pytest.mark.parametrize("status", list(STAGES))
def test_submit_on_an_existing_stream_conflicts(status: str) -> None:
    then(
        given(STAGES[status]), SubmitJob(submitted().payload), Reject("conflict", f"job {JOB} already exists")
    )


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_other_command_on_an_unknown_job_is_not_found(name: str) -> None:
    then(None, COMMANDS[name], Reject("not_found", f"job {JOB} was not found"))


def test_submitted_payload_carries_the_section_4_2_fields() -> None:
    p = submitted().payload
    assert set(p) == {
        "manifest",
        "graph_id",
        "job_name",
        "daemon",
        "root_agent_ids",
        "policies",
        "manifest_ref",
        "bundle",
        "idempotency_key",
        "request_sha256",
    }
    assert p["root_agent_ids"] == ["router"]
    assert p["policies"] == {
        "placement_policy": "local",
        "recovery_mode": "local_restart",
        "max_agent_restart_attempts": 3,
    }
    assert p["manifest_ref"] == {
        "graph_id": "flow_v1",
        "manifest_version": "1.0",
        "manifest_path": "/bundles/flow_v1/manifest.json",
        "job_path": "/bundles/flow_v1",
    }


# ---------------------------------------------------------------- start, cancel, external


def test_start_without_seeds_schedules_and_runs() -> None:
    then(
        given(QUEUED),
        StartJob("n1", ()),
        (NewEvent(ev.JOB_SCHEDULED, {"node": "n1"}), NewEvent(ev.JOB_RUNNING, {})),
    )


def test_seeds_are_delivered_to_their_envelope_recipient_in_seed_order() -> None:
    seeds = (message("sink", "s-1"), message("router", "s-2"), message("sink", "s-3"))
    events = decide(given(QUEUED), StartJob("n1", seeds), JOB).events
    assert [(e.type, e.agent_id, e.payload.get("route")) for e in events] == [
        (ev.JOB_SCHEDULED, None, None),
        (ev.MESSAGE_DELIVERED, "sink", "seed"),
        (ev.MESSAGE_DELIVERED, "router", "seed"),
        (ev.MESSAGE_DELIVERED, "sink", "seed"),
        (ev.JOB_RUNNING, None, None),
    ]
    assert [e.payload["message"]["envelope"]["message_id"] for e in events[1:-1]] == ["s-1", "s-2", "s-3"]


def test_cancel_by_cleanup_records_its_reason() -> None:
    reason = {"reason": CANCELLED_BY_CLEANUP, "result": {"reason": CANCELLED_BY_CLEANUP}}
    then(given(QUEUED), CancelJob(CANCELLED_BY_CLEANUP), (NewEvent(ev.JOB_CANCELLED, reason),))


@pytest.mark.parametrize("status", list(STAGES))
def test_external_message_to_an_unknown_agent_is_not_found_before_any_status_check(status: str) -> None:
    command = DeliverExternal("ghost", message("ghost", "x-1"))
    then(given(STAGES[status]), command, Reject("not_found", f"agent ghost was not found in job {JOB}"))


def test_agent_events_of_an_unknown_agent_are_not_found() -> None:
    then(
        given(RUNNING),
        RecordAgentEvents("ghost", ()),
        Reject("not_found", f"agent ghost was not found in job {JOB}"),
    )


def test_a_commit_for_an_unknown_agent_is_not_found() -> None:
    then(
        given(RUNNING),
        CommitStep("ghost", "m", 0, None),
        Reject("not_found", f"agent ghost was not found in job {JOB}"),
    )


# ---------------------------------------------------------------- steps


def test_a_step_whose_message_was_already_processed_is_dropped() -> None:
    state = given([*RUNNING, received("router", "seed-1"), processed("router", "seed-1")])
    assert state.agents["router"].processed_messages == 1
    stale = CommitStep("router", "seed-1", 0, {"forwarded": 1})
    then(state, stale, Reject("dropped", "message seed-1 of router was already processed"))
    fresh = CommitStep("router", "seed-2", 1, {"forwarded": 2})
    then(state, fresh, (processed("router", "seed-2", {"forwarded": 2}),))


def test_a_completing_step_appends_job_completed_last() -> None:
    command = CommitStep(
        "router", "seed-1", 0, {"forwarded": 1}, (EMITTED,), Completion("router", {"done": True})
    )
    result = {"agent_id": "router", "output": {"done": True}}
    then(given(RUNNING), command, (*COMMITTED, NewEvent(ev.JOB_COMPLETED, {"result": result}, "router")))


def test_a_step_committed_while_paused_may_complete_the_job() -> None:
    command = CommitStep("router", "seed-1", 0, None, (), Completion("router", None))
    events = decide(given(PAUSED), command, JOB).events
    after = fold(record(events, start=len(PAUSED) + 1), given(PAUSED))
    assert after is not None
    assert (after.job.status, after.job.result, after.job.status_reason) == (
        "completed",
        {"agent_id": "router", "output": None},
        None,
    )


def test_a_failed_step_without_details_of_its_own_keeps_the_given_details() -> None:
    command = FailStep(
        "router", "agent router raised ValueError: x", {"error": "agent router raised ValueError: x"}
    )
    events = decide(given(RUNNING), command, JOB).events
    assert events == (job_failed("router", command.error, command.details),)


# ---------------------------------------------------------------- recovery (§8.2)


def recovered(*causes: str, **manifest_kw: Any) -> JobProjection:
    return given(
        [*submitted_stage(**manifest_kw), *(recovery_started(i, c) for i, c in enumerate(causes, start=1))]
    )


def submitted_stage(**manifest_kw: Any) -> list[NewEvent]:
    return [submitted(**manifest_kw), *RUNNING[1:]]


def test_recovery_attempts_are_numbered_from_one_and_count_only_expired_leases() -> None:
    state = recovered("lease_expired", "node_shutdown")
    assert (state.job.recovery_count, state.job.counted_recoveries) == (2, 1)
    then(
        state,
        StartRecovery("n9", "n3", "node_shutdown"),
        (
            NewEvent(
                ev.JOB_RECOVERY_STARTED,
                {"node": "n9", "from_node": "n3", "attempt": 3, "cause": "node_shutdown", "counted": False},
            ),
        ),
    )
    then(
        state,
        StartRecovery("n9", "n3", "lease_expired"),
        (
            NewEvent(
                ev.JOB_RECOVERY_STARTED,
                {"node": "n9", "from_node": "n3", "attempt": 3, "cause": "lease_expired", "counted": True},
            ),
        ),
    )


def test_the_fourth_lost_lease_fails_the_job_with_the_default_limit() -> None:
    state = recovered("lease_expired", "lease_expired", "lease_expired")
    error = f"job {JOB} exceeded restart attempts (3)"
    then(state, StartRecovery("n5", "n4", "lease_expired"), (job_failed(COORD, error),))
    events = decide(state, StartRecovery("n5", "n4", "lease_expired"), JOB).events
    assert events[0].agent_id == COORD and events[0].payload["result"] == {"agent_id": COORD, "error": error}


def test_shutdown_recoveries_do_not_reach_the_limit() -> None:
    state = recovered("lease_expired", "lease_expired", "lease_expired", "node_shutdown", "node_shutdown")
    events = decide(state, StartRecovery("n7", "n6", "node_shutdown"), JOB).events
    assert [e.type for e in events] == [ev.JOB_RECOVERY_STARTED]
    assert events[0].payload["attempt"] == 6


def test_the_limit_is_the_manifest_policy() -> None:
    error = f"job {JOB} exceeded restart attempts (1)"
    then(
        recovered("lease_expired", max_restarts=1),
        StartRecovery("n3", "n2", "lease_expired"),
        (job_failed(COORD, error),),
    )
    error0 = f"job {JOB} exceeded restart attempts (0)"
    then(recovered(max_restarts=0), StartRecovery("n2", "n1", "lease_expired"), (job_failed(COORD, error0),))


def test_daemon_jobs_recover_without_limit() -> None:
    state = recovered(*["lease_expired"] * 6, daemon=True, max_restarts=1)
    assert state.job.max_agent_restart_attempts is None
    events = decide(state, StartRecovery("n8", "n7", "lease_expired"), JOB).events
    assert [e.type for e in events] == [ev.JOB_RECOVERY_STARTED]
    assert events[0].payload["attempt"] == 7


def test_the_recovery_limit_also_fails_a_paused_job() -> None:
    state = given([*PAUSED, *(recovery_started(i) for i in (1, 2, 3))])
    assert state.job.status == "paused"
    then(
        state,
        StartRecovery("n5", "n4", "lease_expired"),
        (job_failed(COORD, f"job {JOB} exceeded restart attempts (3)"),),
    )


def test_manual_recovery_of_a_running_job_pauses_it() -> None:
    state = given([*RUNNING, recovery_started(1)])
    command = FinishRecovery(1, RECOVERED, manual=True)
    then(state, command, (*AGENTS_RECOVERED, NewEvent(ev.JOB_PAUSED, {"reason": AWAITING_MANUAL_RECOVERY})))


def test_manual_recovery_of_a_paused_job_keeps_it_paused_without_a_second_pause() -> None:
    state = given([*PAUSED, recovery_started(1)])
    then(state, FinishRecovery(1, RECOVERED, manual=True), AGENTS_RECOVERED)


def test_recovered_agents_carry_the_recovery_attempt() -> None:
    events = decide(given(RUNNING), FinishRecovery(4, RECOVERED[:1], manual=False), JOB).events
    assert events == (
        NewEvent(
            ev.AGENT_RECOVERED, {"attempt": 4, "mailbox_depth": 1, "inflight_message_id": None}, "router"
        ),
    )


def test_recovered_mailbox_counts_the_in_flight_message_from_the_projection() -> None:
    state = given([*RUNNING, received("router", "seed-1"), recovery_started(1)])
    events = decide(state, FinishRecovery(1, ("router",), manual=False), JOB).events
    assert events == (
        NewEvent(ev.AGENT_RECOVERED, {"attempt": 1, "mailbox_depth": 1, "inflight_message_id": "seed-1"}, "router"),
    )


def test_a_recovery_error_fails_the_job_with_its_agent() -> None:
    error = "bundle path does not exist on node n2: /bundles/flow_v1"
    then(given([*RUNNING, recovery_started(1)]), FailJob(COORD, error), (job_failed(COORD, error),))


# ---------------------------------------------------------------- projection effects (§4.6)


def projected(new_events: Sequence[NewEvent]) -> tuple[list[Event], JobProjection]:
    recorded = record(new_events)
    state = fold(recorded)
    assert state is not None
    return recorded, state


def test_job_submitted_inserts_the_job_and_one_agent_per_graph_node() -> None:
    recorded, state = projected(PENDING)
    job = state.job
    assert (job.job_id, job.graph_id, job.job_name, job.status, job.status_reason) == (
        JOB,
        "flow_v1",
        "flow",
        "pending",
        None,
    )
    assert job.submitted_at == job.updated_at == job.last_timestamp == recorded[0].timestamp
    assert (job.last_sequence, job.last_hash, job.last_event) == (1, "hash-1", "job_submitted")
    assert (job.root_agent_ids, job.nodes, job.node, job.result) == (("router",), (), None, None)
    assert (job.recovery_count, job.counted_recoveries, job.max_agent_restart_attempts) == (0, 0, 3)
    assert (job.placement_policy, job.recovery_policy, job.daemon) == ("local", "local_restart", False)
    assert job.bundle == {"bundle_id": "flow_v1", "fingerprint": "f" * 64}
    assert (job.idempotency_key, job.request_sha256, job.executor_count) == ("key-1", "a" * 64, 1)
    assert [(a.agent_id, a.ordinal, a.agent_type, a.template, a.role) for a in state.agents.values()] == [
        ("router", 0, "router", "generic", "root"),
        ("exec", 1, "executor", "stream", None),
        ("sink", 2, "aggregator", "reduce", None),
    ]
    for agent in state.agents.values():
        assert (agent.processed_messages, agent.mailbox_depth, agent.runs, agent.inflight_message_id) == (
            0,
            0,
            0,
            None,
        )
        assert (agent.state, agent.last_error, agent.sandbox_name, agent.lease_id) == (None, None, None, None)


def test_a_daemon_job_shows_no_restart_limit() -> None:
    assert given([submitted(daemon=True)]).job.max_agent_restart_attempts is None


def test_lifecycle_statuses_reasons_and_node_set() -> None:
    events = [
        *RUNNING,
        NewEvent(ev.JOB_PAUSED, {"reason": PAUSED_BY_OPERATOR}),
    ]
    state = given(events)
    assert (state.job.status, state.job.status_reason, state.job.node, state.job.nodes) == (
        "paused",
        PAUSED_BY_OPERATOR,
        "n1",
        ("n1",),
    )
    state = given([*events, NewEvent(ev.JOB_RESUMED, {"reason": RESUMED_BY_OPERATOR})])
    assert (state.job.status, state.job.status_reason) == ("running", None)
    state = given([*events, recovery_started(1), recovery_started(2, "node_shutdown"), recovery_started(3)])
    assert state.job.status == "paused"
    assert (state.job.node, state.job.nodes) == ("n4", ("n1", "n2", "n3", "n4"))
    assert (state.job.recovery_count, state.job.counted_recoveries) == (3, 2)


def test_rescheduling_on_a_known_node_keeps_the_node_set_unique() -> None:
    again = NewEvent(
        ev.JOB_RECOVERY_STARTED,
        {"node": "n1", "from_node": "n1", "attempt": 1, "cause": "node_shutdown", "counted": False},
    )
    assert given([*RUNNING, again]).job.nodes == ("n1",)


@pytest.mark.parametrize(
    ("stage", "status", "reason", "result"),
    [
        (COMPLETED, "completed", None, {"agent_id": "router", "output": 1}),
        (
            FAILED,
            "failed",
            "command exited with status 2",
            {"agent_id": "exec", "error": "command exited with status 2"},
        ),
        (CANCELLED, "cancelled", CANCELLED_BY_OPERATOR, {"reason": CANCELLED_BY_OPERATOR}),
    ],
)
def test_terminal_events_set_status_reason_and_result(
    stage: list[NewEvent], status: str, reason: str | None, result: Any
) -> None:
    job = given(stage).job
    assert (job.status, job.status_reason, job.result, job.terminal) == (status, reason, result, True)


def test_job_failed_on_a_graph_node_sets_its_last_error_and_message_processed_clears_it() -> None:
    state = given(FAILED)
    assert state.agents["exec"].last_error == "command exited with status 2"
    assert state.agents["router"].last_error is None
    state = given([*RUNNING, failed(COORD, f"job {JOB} exceeded restart attempts (3)")])
    assert all(a.last_error is None for a in state.agents.values())

    state = given([*RUNNING, delivered("exec", "m-1"), received("exec", "m-1"), ATTEMPT_FAILED])
    assert state.agents["exec"].last_error == STEP_ERROR
    state = given(
        [
            *RUNNING,
            delivered("exec", "m-1"),
            received("exec", "m-1"),
            ATTEMPT_FAILED,
            processed("exec", "m-1", {"n": 1}),
        ]
    )
    assert state.agents["exec"].last_error is None


def test_mailbox_in_flight_and_processed_counters() -> None:
    base = [*RUNNING, delivered("router", "seed-2"), delivered("sink", "ext-1", "external")]
    state = given(base)
    assert (state.agents["router"].mailbox_depth, state.agents["sink"].mailbox_depth) == (2, 1)

    state = given([*base, received("router", "seed-1")])
    router = state.agents["router"]
    assert (router.mailbox_depth, router.inflight_message_id, router.processed_messages) == (1, "seed-1", 0)

    state = given([*base, received("router", "seed-1"), processed("router", "seed-1", {"forwarded": 1})])
    router = state.agents["router"]
    assert (router.mailbox_depth, router.inflight_message_id, router.processed_messages) == (1, None, 1)
    assert router.state == {"forwarded": 1}


def test_agent_recovered_sets_the_mailbox_depth_and_clears_in_flight() -> None:
    recovered_event = NewEvent(
        ev.AGENT_RECOVERED, {"attempt": 1, "mailbox_depth": 1, "inflight_message_id": "seed-1"}, "router"
    )
    state = given([*RUNNING, received("router", "seed-1"), recovery_started(1), recovered_event])
    router = state.agents["router"]
    assert (router.mailbox_depth, router.inflight_message_id) == (1, None)


def test_executor_lease_and_sandbox_fields() -> None:
    lease = NewEvent(
        ev.EXECUTOR_LEASE_ACQUIRED,
        {"lease_id": "l-1", "pool": "default", "slots": 2, "queue_wait_ms": 5},
        "exec",
    )
    completed = NewEvent(
        ev.SANDBOX_JOB_COMPLETED,
        {"sandbox_name": "sbx-2", "exit_code": 0, "attempts": 2, "lease_id": "l-1", "pool": "default"},
        "exec",
    )
    events = [*RUNNING, delivered("exec", "m-1"), received("exec", "m-1"), lease, ATTEMPT_FAILED]
    recorded, state = projected(events)
    exec_ = state.agents["exec"]
    assert (exec_.lease_id, exec_.lease_pool, exec_.lease_slots) == ("l-1", "default", 2)
    assert (exec_.sandbox_name, exec_.sandbox_exit_code, exec_.sandbox_pool, exec_.sandbox_at) == (
        "sbx-1",
        2,
        "default",
        recorded[-1].timestamp,
    )
    assert (exec_.runs, state.job.sandbox_names) == (0, ("sbx-1",))

    recorded, state = projected([*events, completed])
    exec_ = state.agents["exec"]
    assert (exec_.runs, exec_.sandbox_name, exec_.sandbox_exit_code, exec_.sandbox_at) == (
        1,
        "sbx-2",
        0,
        recorded[-1].timestamp,
    )
    assert exec_.last_error == STEP_ERROR  # only message_processed clears it
    assert state.job.sandbox_names == ("sbx-1", "sbx-2")


def test_updated_at_moves_only_on_lifecycle_events() -> None:
    recorded, state = projected(RUNNING)
    assert state.job.updated_at == recorded[-1].timestamp  # job_running
    later = [*RUNNING, delivered("sink", "ext-1", "external"), received("sink", "ext-1"), ATTEMPT_FAILED]
    recorded, state = projected(later)
    assert state.job.updated_at == recorded[len(RUNNING) - 1].timestamp
    assert state.job.last_timestamp == recorded[-1].timestamp
    assert (state.job.last_sequence, state.job.last_hash) == (len(later), f"hash-{len(later)}")
    recorded, state = projected([*later, NewEvent(ev.JOB_PAUSED, {"reason": PAUSED_BY_OPERATOR})])
    assert state.job.updated_at == recorded[-1].timestamp


def test_last_event_names_the_agent() -> None:
    assert given(RUNNING[:-1]).job.last_event == "message_delivered(router)"
    assert given(RUNNING).job.last_event == "job_running"
    assert given(COMPLETED).job.last_event == "job_completed(router)"
    assert given([*RUNNING, failed(COORD, "x")]).job.last_event == f"job_failed({COORD})"


def test_events_naming_no_graph_node_touch_no_agent_row() -> None:
    dead = NewEvent(
        ev.DEAD_LETTER, {"message": message("ghost", "d-1"), "reason": "unknown agent ghost"}, "ghost"
    )
    custom = NewEvent("progress", {"pct": 50}, "exec")
    before = given(RUNNING)
    after = given([*RUNNING, dead, custom])
    assert dict(after.agents) == dict(before.agents)
    assert after.job.last_event == "progress(exec)"


def test_fold_is_project_one_event_at_a_time_and_leaves_its_input_alone() -> None:
    events = record(
        [*RUNNING, received("router", "seed-1"), processed("router", "seed-1", {"a": 1}), *COMPLETED[-1:]]
    )
    state: JobProjection | None = None
    for event in events:
        state = project(state, event)
    assert state == fold(events)
    middle = fold(events[:4])
    assert fold(events[4:], middle) == state
    assert middle == fold(events[:4])


def test_a_stream_must_start_with_job_submitted() -> None:
    with pytest.raises(ValueError, match="does not start with job_submitted"):
        fold(record([NewEvent(ev.JOB_QUEUED, {"node": "n1"})]))
