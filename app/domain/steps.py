"""A step's outcome as the command that records it, and the decided steps chained after a command.

Whatever an agent's kind (`agent_kinds`), its step ends as `Handled` (actions and state) or
`Failed`; `step_command` turns that into the `CommitStep` or `FailStep` the write path commits.
A `Decided` step is wholly pure (`decided_step`), so the runner can decide the steps a command's
deliveries lead to before the command commits (`chain_after`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from app.domain import events as ev
from app.domain.agent_kinds import Decided, is_decided
from app.domain.agents import Failed, Handled, StepContext, materialize, raised_failure
from app.domain.events import NewEvent
from app.domain.job import CommitStep, FailStep, StartJob
from app.domain.messages import received_payload
from app.domain.runtime_state import AgentRuntime, JobRuntime

# The longest chain of decided steps committed after one command.
MAX_CHAIN = 64


def received(agent_id: str, message: dict[str, Any]) -> NewEvent:
    """`agent_message_received`: the step of `message` began."""
    return NewEvent(ev.AGENT_MESSAGE_RECEIVED, received_payload(message), agent_id)


def fail_command(agent_id: str, failed: Failed) -> FailStep:
    """The command that fails the job with `failed`."""
    return FailStep(agent_id, failed.error, failed.details, failed.events)


def step_command(
    ctx: StepContext, expected: int, outcome: Handled | Failed, head: tuple[NewEvent, ...] = (), *, chained: bool = False
) -> CommitStep | FailStep:
    """The command of a step of `ctx.incoming`: `head` events first, then the outcome's."""
    if isinstance(outcome, Failed):
        return fail_command(ctx.agent_id, Failed(outcome.error, outcome.details, (*head, *outcome.events)))
    produced, completion = materialize(ctx, outcome.actions)
    message_id = ctx.incoming["envelope"]["message_id"]
    return CommitStep(ctx.agent_id, message_id, expected, outcome.state, (*head, *produced), completion, chained)


def decided_step(
    kind: Decided, agent: AgentRuntime, message: dict[str, Any], ctx: StepContext, expected: int,
    *, chained: bool = False,
) -> CommitStep | FailStep:
    """A decided step of `message` as a command; a handler that raises fails the job (SPEC §7.1)."""
    head = (received(agent.agent_id, message),)
    try:
        outcome: Handled | Failed = kind.handle(agent, message)
    except Exception as exc:
        outcome = raised_failure(agent.agent_id, exc)
    return step_command(ctx, expected, outcome, head, chained=chained)


Chainable = StartJob | CommitStep | FailStep


def chain_after(
    job: JobRuntime, first: Chainable, decide: Callable[[AgentRuntime, dict[str, Any]], CommitStep | FailStep]
) -> list[CommitStep | FailStep]:
    """The decided steps that `first`'s deliveries lead to, to commit right after it.

    A decided step is a pure function of the agent's state and the message, so the step an idle
    agent would take once `first` commits can be decided before: the job's slot then costs one
    commit instead of one per step. A recipient is taken when it is idle here (empty mailbox),
    receives exactly one message in the whole chain so far, and has not stepped in it; `decide`
    marks the step `chained`, so the write path drops it unless the message is still alone in the
    mailbox of a running job. The chain stops at a step that ends the job, and at MAX_CHAIN steps.
    """
    if not isinstance(first, StartJob) and job.status != "running":
        return []
    chain: list[CommitStep | FailStep] = []
    delivered: Counter[str] = Counter(to for to, _ in _deliveries(first))
    stepped: set[str] = set()
    ahead: list[Chainable] = [first]
    while ahead:
        command = ahead.pop(0)
        if _ends_job(command):
            return chain
        for to, message in _deliveries(command):
            agent = job.agents.get(to)
            if agent is None or not _idle_decided(agent) or delivered[to] != 1 or to in stepped:
                continue
            step = decide(agent, message)
            chain.append(step)
            stepped.add(to)
            delivered.update(t for t, _ in _deliveries(step))
            if _ends_job(step) or len(chain) >= MAX_CHAIN:
                return chain
            ahead.append(step)
    return chain


def _idle_decided(agent: AgentRuntime) -> bool:
    return is_decided(agent.agent_type) and not agent.queue and not agent.head_received


def _deliveries(command: Chainable) -> list[tuple[str, dict[str, Any]]]:
    """(recipient, message) of every message `command` delivers, in order."""
    if isinstance(command, StartJob):
        return [(m["envelope"]["to"], m) for m in command.seeds]
    return [(e.agent_id, e.payload["message"]) for e in command.events if e.type == ev.MESSAGE_DELIVERED and e.agent_id]


def _ends_job(command: Chainable) -> bool:
    return isinstance(command, FailStep) or (isinstance(command, CommitStep) and command.completion is not None)
