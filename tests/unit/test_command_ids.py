"""`command_id`: a command's id is derived from what it does, stable for a retry, distinct otherwise."""

from __future__ import annotations

from app.domain import events as ev
from app.domain.events import NewEvent
from app.domain.job import (
    AdmitJob,
    CancelJob,
    CommitStep,
    FailBootstrap,
    FailJob,
    FailStep,
    FinishRecovery,
    RecordAgentEvents,
    StartJob,
    StartRecovery,
    command_id,
)

LEASE = "inc-a.1"


def _received(message_id: str) -> NewEvent:
    return NewEvent(ev.AGENT_MESSAGE_RECEIVED, {"message_id": message_id}, "w")


def _attempt(n: int) -> NewEvent:
    return NewEvent(ev.EXECUTOR_ATTEMPT_FAILED, {"attempt": n}, "w")


REQUESTED = NewEvent(ev.EXECUTOR_LEASE_REQUESTED, {"pool": "default", "slots": 1}, "w")


def test_every_commit_of_one_step_and_every_step_has_its_own_id() -> None:
    commands = [
        RecordAgentEvents("w", (_received("m1"),), "m1"),
        RecordAgentEvents("w", (REQUESTED,), "m1"),
        RecordAgentEvents("w", (_attempt(1),), "m1"),
        RecordAgentEvents("w", (_attempt(2),), "m1"),
        CommitStep("w", "m1", 0, None),
        RecordAgentEvents("w", (_received("m2"),), "m2"),
        RecordAgentEvents("w", (REQUESTED,), "m2"),
        CommitStep("w", "m2", 1, None),
        RecordAgentEvents("v", (_received("m1"),), "m1"),
        CommitStep("v", "m1", 0, None),
        FailStep("w", "boom", {}),
        StartJob("n", ()),
        StartRecovery("n", None, "lease_expired"),
        FinishRecovery(1, ("w",), manual=False),
        FailJob("w", "boom"),
    ]
    ids = [command_id(c, LEASE) for c in commands]
    assert None not in ids
    assert len(set(ids)) == len(ids)


def test_a_retry_is_the_same_command_and_another_lease_is_another() -> None:
    first = RecordAgentEvents("w", (REQUESTED,), "m1")
    rebuilt = RecordAgentEvents("w", (NewEvent(ev.EXECUTOR_LEASE_REQUESTED, {"pool": "default", "slots": 1}, "w"),), "m1")
    assert command_id(first, LEASE) == command_id(rebuilt, LEASE)
    assert command_id(first, LEASE) != command_id(first, "inc-a.2") != command_id(first, "inc-b.2")
    # A bootstrap either starts or fails the job: one command under one lease.
    assert command_id(StartJob("n", ()), LEASE) == command_id(FailBootstrap("n", "w", "e"), LEASE)


def test_admission_is_one_command_per_job_and_operator_commands_have_no_natural_id() -> None:
    assert command_id(AdmitJob("n1"), None) == command_id(AdmitJob("n2"), "x.1") == "admit"
    assert command_id(CancelJob(), None) is None
    assert command_id(CommitStep("w", "m1", 0, None), None) is None  # without a lease: no id
    # A record that names no message (nor carries a received one) gets no id rather than a shared one.
    assert command_id(RecordAgentEvents("w", (REQUESTED,)), LEASE) is None
    assert command_id(RecordAgentEvents("w", (_received("m9"),)), LEASE) == command_id(
        RecordAgentEvents("w", (_received("m9"),), "m9"), LEASE
    )
