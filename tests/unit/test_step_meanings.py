"""What a step means, without running anything: the pure functions the runner's parts call.

`executor_step` (a failed attempt, a finished run), `module_step` (what `handle` returned) and
`steps` (an outcome as its command). The runtime tests run the same paths end to end.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.domain import events as ev
from app.domain import executor_step as xs
from app.domain import module_step
from app.domain.agents import Complete, Emit, Failed, Handled, Record, StepContext, Topology
from app.domain.events import NewEvent
from app.domain.executor import executor_settings
from app.domain.job import CommitStep, FailStep
from app.domain.steps import step_command

LEASE = {"lease_id": "l1", "pool": "default", "slots": 1}
RECORD = {**LEASE, "queue_wait_ms": 0}


def run(stdout: str = "", *, ok: bool = True, transient: bool = False, exit_code: int | None = 0) -> xs.AttemptOutcome:
    result = {"exit_code": exit_code, "stdout": stdout, "stdout_truncated": False}
    return xs.AttemptOutcome(ok, result, None if ok else "boom", transient, "sbx")


def finished(stdout: str, config: dict[str, Any] | None = None, state: Any = None) -> Handled | Failed:
    settings = executor_settings(config or {}, 10)
    return xs.finished(xs.Finished("w", settings, state, {"n": 1}, 1, run(stdout), LEASE, RECORD))


def test_a_transient_failure_with_attempts_left_is_retried_after_the_backoff() -> None:
    settings = executor_settings({"max_attempts": 2, "retry_backoff_ms": 100}, 10)
    retry = xs.attempt_failed("w", settings, 1, run(ok=False, transient=True), LEASE)
    assert isinstance(retry, xs.Retry) and retry.wait_ms == 100
    assert retry.event.type == ev.EXECUTOR_ATTEMPT_FAILED and retry.event.payload["retry_in_ms"] == 100


def test_the_last_failed_attempt_fails_the_step_with_the_lease_released() -> None:
    settings = executor_settings({"max_attempts": 2}, 10)
    failed = xs.attempt_failed("w", settings, 2, run(ok=False, transient=True, exit_code=3), LEASE)
    assert isinstance(failed, Failed) and failed.error == "boom"
    assert [e.type for e in failed.events] == [ev.EXECUTOR_ATTEMPT_FAILED, ev.EXECUTOR_LEASE_RELEASED]
    assert failed.details["attempts"] == 2 and failed.details["exit_code"] == 3


def test_a_finished_run_releases_completes_then_emits_its_output() -> None:
    handled = finished("plain text")
    assert isinstance(handled, Handled)
    released, completed, emit = handled.actions
    assert isinstance(released, Record) and released.event.type == ev.EXECUTOR_LEASE_RELEASED
    assert isinstance(completed, Record) and completed.event.type == ev.SANDBOX_JOB_COMPLETED
    assert isinstance(emit, Emit) and emit.type == "executor_result" and emit.body["input"] == {"n": 1}
    assert handled.state == {"runs": 1, "agent_state": {}}


def test_structured_stdout_sets_the_next_state_records_and_completes() -> None:
    stdout = json.dumps({"next_state": {"k": 2}, "events": [{"type": "noted", "payload": {"a": 1}}], "complete_job?": True})
    handled = finished(stdout, {"output_message_type": None}, state={"runs": 4, "agent_state": {"k": 1}})
    assert isinstance(handled, Handled)
    assert [type(a).__name__ for a in handled.actions] == ["Record", "Record", "Record", "Complete"]
    assert handled.state == {"runs": 5, "agent_state": {"k": 2}}


def test_structured_stdout_with_an_out_of_range_integer_fails_the_step() -> None:
    failed = finished('{"complete_job": ' + "9" * 400 + "}")
    assert isinstance(failed, Failed) and failed.error.startswith("agent w raised ValueError")
    assert [e.type for e in failed.events] == [ev.EXECUTOR_LEASE_RELEASED]


def test_module_actions_in_order_and_the_errors_that_name_the_agent() -> None:
    raw = [{"action": "emit", "type": "t", "body": 1, "class": "event"}, {"action": "complete_job", "result": 2}]
    assert module_step.actions("m", raw) == [Emit("t", 1, None, {"class": "event"}), Complete(2)]
    with pytest.raises(module_step.ModuleAgentError, match='agent m returned an unknown action "jump"'):
        module_step.actions("m", [{"action": "jump"}])
    with pytest.raises(module_step.ModuleAgentError, match='cannot emit reserved event type "job_failed"'):
        module_step.actions("m", [{"action": "event", "type": "job_failed"}])


def test_a_module_state_that_is_not_json_fails_in_the_spec_s_words() -> None:
    assert module_step.checked_state("m", {"a": [1]}) == {"a": [1]}
    with pytest.raises(module_step.ModuleAgentError, match="not JSON-serialisable"):
        module_step.checked_state("m", {"a": object()})
    assert module_step.failure("m", module_step.ModuleAgentError("said")) == Failed("said", {"error": "said"})
    assert module_step.failure("m", KeyError("k")).error == "agent m raised KeyError: 'k'"


def test_an_outcome_becomes_its_command_with_the_head_first() -> None:
    message = {"envelope": {"message_id": "m1", "job_id": "j", "from": "a", "to": "b", "type": "t"}, "body": None}
    ctx = StepContext("j", "b", message, Topology(frozenset({"b"}), {}), "2024-01-01T00:00:00.000Z", lambda: "m2")
    head = (NewEvent("h", {}, "b"),)
    commit = step_command(ctx, 3, Handled((Complete(1),), {"s": 1}), head)
    assert isinstance(commit, CommitStep) and commit.events == head and commit.expected_processed == 3
    assert commit.completion is not None and commit.completion.output == 1
    fail = step_command(ctx, 3, Failed("e", {"error": "e"}, (NewEvent("x", {}, "b"),)), head)
    assert isinstance(fail, FailStep) and [e.type for e in fail.events] == ["h", "x"]
