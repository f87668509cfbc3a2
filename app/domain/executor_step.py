"""What the moments of an executor step mean (SPEC §7.5): the events and payloads, no I/O.

The runtime (`runtime/executor_steps.py`) leases the slots and runs the attempts; at each moment
it asks this module what to record: the lease events, a failed attempt (retry or fail the step),
and a finished run (the output payload and what structured stdout asks for, §7.5.7).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.domain import events as ev
from app.domain import executor as exd
from app.domain.agents import RESULT_OPTIONS, Action, Complete, Emit, Failed, Handled, Record, raised_failure
from app.domain.events import NewEvent


def persisted_state(state: Any) -> dict[str, Any]:
    """The executor's persisted `{runs, agent_state}` (empty before its first step)."""
    return state if isinstance(state, dict) else {}


def agent_state(state: Any) -> Any:
    """The `agent_state` an attempt is given: the last `next_state`, `{}` at first."""
    return persisted_state(state).get("agent_state", {})


def lease_requested(agent_id: str, settings: exd.ExecutorSettings) -> NewEvent:
    """`executor_lease_requested` for the agent's pool and slots."""
    return NewEvent(ev.EXECUTOR_LEASE_REQUESTED, {"pool": settings.pool, "slots": settings.pool_slots}, agent_id)


def lease_refused(error: str) -> Failed:
    """A lease the pools cannot grant fails the step before any attempt (§7.5.8)."""
    return Failed(error, exd.failure_details(None, error, 0))


def lease_acquired(agent_id: str, lease: Mapping[str, Any], queue_wait_ms: int) -> NewEvent:
    """`executor_lease_acquired`: the lease `{lease_id, pool, slots}` and how long it was queued."""
    return NewEvent(ev.EXECUTOR_LEASE_ACQUIRED, {**lease, "queue_wait_ms": queue_wait_ms}, agent_id)


def lease_released(agent_id: str, lease: Mapping[str, Any]) -> NewEvent:
    """`executor_lease_released` of the lease `{lease_id, pool, slots}`."""
    return NewEvent(ev.EXECUTOR_LEASE_RELEASED, dict(lease), agent_id)


@dataclass(frozen=True)
class AttemptOutcome:
    """The result of one attempt: the §7.5.6 run result, the error sentence and its transience."""

    ok: bool
    run_result: dict[str, Any]
    error: str | None
    transient: bool
    sandbox_name: str

    @property
    def exit_code(self) -> int | None:
        """Return the process exit status (None without a normally ended process)."""
        code = self.run_result.get("exit_code")
        return code if isinstance(code, int) else None


@dataclass(frozen=True)
class Retry:
    """Record `event`, wait `wait_ms`, then run the next attempt."""

    event: NewEvent
    wait_ms: int


def attempt_failed(
    agent_id: str, settings: exd.ExecutorSettings, attempt: int, run: AttemptOutcome, lease: Mapping[str, Any]
) -> Retry | Failed:
    """Attempt number `attempt` failed: retry after a backoff while transient with attempts left, else fail."""
    error = run.error or "executor attempt failed"
    retry = run.transient and attempt < settings.max_attempts
    wait_ms = exd.backoff_ms(settings, attempt) if retry else None
    failed = NewEvent(
        ev.EXECUTOR_ATTEMPT_FAILED,
        {
            "attempt": attempt, "max_attempts": settings.max_attempts, "error": error,
            "exit_code": run.run_result.get("exit_code"), "transient": run.transient,
            "retry_in_ms": wait_ms, "sandbox_name": run.sandbox_name, "pool": lease["pool"],
        },
        agent_id,
    )
    if wait_ms is None:
        details = exd.failure_details(run.run_result, error, attempt)
        return Failed(error, details, (failed, lease_released(agent_id, lease)))
    return Retry(failed, wait_ms)


@dataclass(frozen=True)
class Finished:
    """A successful run of an executor step, with everything its meaning depends on."""

    agent_id: str
    settings: exd.ExecutorSettings
    state: Any
    body: Any
    attempts: int
    run: AttemptOutcome
    lease: Mapping[str, Any]
    lease_record: Mapping[str, Any]


def finished(done: Finished) -> Handled | Failed:
    """The executor's step after a successful run: lease released, sandbox job completed, then its actions.

    Actions: the output message and job completion the config asks for, then what structured
    stdout asks for (§7.5.7). Structured stdout with an integer no double equals fails the step
    (SPEC C.1.2).
    """
    aid, run = done.agent_id, done.run
    released = lease_released(aid, done.lease)
    completed = NewEvent(
        ev.SANDBOX_JOB_COMPLETED,
        {
            "sandbox_name": run.sandbox_name, "exit_code": 0, "attempts": done.attempts,
            "lease_id": done.lease["lease_id"], "pool": done.lease["pool"],
        },
        aid,
    )
    output = exd.output_payload(aid, run.run_result, done.attempts, done.lease_record, done.body)
    try:
        structured = exd.parse_structured_stdout(run.run_result["stdout"], run.run_result["stdout_truncated"])
    except ValueError as exc:
        return raised_failure(aid, exc, released)
    actions: list[Action] = [Record(released), Record(completed), *_configured(done.settings, output)]
    next_state = agent_state(done.state)
    for item in [] if structured is None else exd.structured_actions(structured, ev.RESERVED_TYPES):
        match item:
            case exd.NextState():
                next_state = item.state
            case exd.CustomEvent():
                actions.append(Record(NewEvent(item.type, item.payload, aid)))
            case exd.Emit():
                actions.append(Emit(item.type, item.body, item.to, item.options))
            case exd.Complete():
                actions.append(Complete(item.result))
            case exd.CompleteWithOutput():
                actions.append(Complete(output))
    runs = int(persisted_state(done.state).get("runs", 0)) + 1
    return Handled(tuple(actions), {"runs": runs, "agent_state": next_state})


def _configured(settings: exd.ExecutorSettings, output: dict[str, Any]) -> list[Action]:
    """The output message and the job completion an executor's config asks for (§7.5.1)."""
    actions: list[Action] = []
    if settings.output_message_type is not None:
        options = {**RESULT_OPTIONS, "headers": exd.RESULT_HEADERS}
        actions.append(Emit(settings.output_message_type, output, options=options))
    if settings.complete_job:
        actions.append(Complete(output))
    return actions
