"""`Service.execute_chain`: commands of one job committed in order, each only after the one before it.

A runner chains the builtin steps a command's deliveries lead to (tests/unit/test_chain.py);
here the write path's side: the chain shares the group commit's transaction, a command
whose predecessor appended nothing is dropped, a `chained` step is dropped unless its
message is alone in the mailbox of a running job, and all of it holds when the batch falls
back to one transaction per command.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.domain import events as ev
from app.domain.events import Event, NewEvent
from app.domain.job import (
    AdmitJob,
    CancelJob,
    Command,
    CommitStep,
    Completion,
    DeliverExternal,
    PauseJob,
    Rejected,
    StartJob,
)
from app.service import Outcome, Service, group_commit
from app.service.group_commit import GroupCommit
from app.store import event_store, leases, projector
from app.store.database import Database
from app.store.leases import Fence
from app.store.rebuild import verify

T0 = 1_711_623_600_000
TTL = 60_000


def manifest() -> dict[str, Any]:
    node: dict[str, Any] = {
        "tool_bindings": [], "retry_policy": {}, "checkpoint_policy": {}, "spawn_policy": {}, "config": {},
    }
    return {
        "manifest_version": "1.0",
        "graph_id": "chain_v1",
        "job_name": "chain",
        "daemon": False,
        "metadata": {},
        "nodes": [
            {**node, "node_id": "router", "agent_type": "router", "type": "generic", "role": "root"},
            {**node, "node_id": "sink", "agent_type": "aggregator", "type": "reduce", "role": None},
        ],
        "edges": [],
        "entrypoints": ["router"],
        "initial_inputs": {},
        "policies": {"placement_policy": "local", "recovery_mode": "local_restart", "max_agent_restart_attempts": 3},
    }


def message(job_id: str, message_id: str, sender: str, to: str) -> dict[str, Any]:
    envelope = {"message_id": message_id, "job_id": job_id, "from": sender, "to": to, "type": "init", "class": "command"}
    return {"envelope": envelope, "headers": {}, "body": {"n": 1}, "artifacts": [], "stream": None}


def received(m: dict[str, Any]) -> NewEvent:
    e = m["envelope"]
    payload = {"message_id": e["message_id"], "from": e["from"], "to": e["to"], "type": e["type"]}
    return NewEvent(ev.AGENT_MESSAGE_RECEIVED, payload, e["to"])


def router_step(job_id: str, *, chained: bool) -> CommitStep:
    """The router handles the seed and forwards it to the sink as message `fwd-1`."""
    delivered = NewEvent(
        ev.MESSAGE_DELIVERED, {"message": message(job_id, "fwd-1", "router", "sink"), "route": "direct", "edge_id": None},
        "sink",
    )
    seed = message(job_id, "seed-1", "runtime", "router")
    return CommitStep("router", "seed-1", 0, {"forwarded": 1}, (received(seed), delivered), chained=chained)


def sink_step(job_id: str) -> CommitStep:
    """The sink, decided ahead on `fwd-1`, completes the job."""
    fwd = message(job_id, "fwd-1", "router", "sink")
    return CommitStep("sink", "fwd-1", 0, None, (received(fwd),), Completion("sink", {"count": 1}), chained=True)


def start(job_id: str) -> StartJob:
    return StartJob("n1", (message(job_id, "seed-1", "runtime", "router"),))


async def claimed_job(db: Database, service: Service) -> tuple[str, Fence]:
    """A queued job whose lease node n1 holds, not yet started."""
    submitted = await service.submit(manifest=manifest(), bundle=None, idempotency_key=None, request_sha256="0" * 64)
    job_id = submitted.job_id
    await service.execute(job_id, AdmitJob("n1"))
    async with db.write() as conn:
        fence = await leases.claim(conn, job_id, node="n1", incarnation="inc-a", now_ms=service.clock(), ttl_ms=TTL)
    assert fence is not None
    return job_id, fence


async def stream(db: Database, job_id: str) -> list[Event]:
    async with db.read() as conn:
        return await event_store.read_stream(conn, job_id)


async def sink_depth(db: Database, job_id: str) -> int:
    async with db.read() as conn:
        return (await projector.load_agents(conn, job_id, {"sink"}))["sink"].mailbox_depth


def kinds(results: list[Outcome | BaseException]) -> list[str]:
    return [r.kind if isinstance(r, Rejected) else type(r).__name__ for r in results]


@pytest.fixture(params=["batch", "one by one"])
def path(request: pytest.FixtureRequest) -> str:
    """Each test runs its chain through the group commit's shared transaction and through its fallback."""
    return str(request.param)


async def chain(
    service: Service, path: str, job_id: str, commands: list[Command], fence: Fence
) -> list[Outcome | BaseException]:
    with pytest.MonkeyPatch.context() as patch:
        if path == "batch":
            async def never_alone(self: GroupCommit, pending: Any) -> Outcome:
                raise AssertionError("the chain left the shared transaction")

            patch.setattr(GroupCommit, "_execute_one", never_alone)
        else:
            async def run_alone(self: GroupCommit, batch: Any) -> Any:
                raise group_commit._RunAlone

            patch.setattr(GroupCommit, "_execute_many", run_alone)
        return await service.execute_chain(job_id, commands, fence)


async def test_a_chain_commits_the_start_and_the_steps_it_leads_to(db: Database, service: Service, path: str) -> None:
    job_id, fence = await claimed_job(db, service)
    before = await stream(db, job_id)
    results = await chain(service, path, job_id, [start(job_id), router_step(job_id, chained=True), sink_step(job_id)], fence)
    assert kinds(results) == ["Outcome", "Outcome", "Outcome"]
    after = await stream(db, job_id)
    assert [e.type for e in after[len(before):]] == [
        ev.JOB_SCHEDULED, ev.MESSAGE_DELIVERED, ev.JOB_RUNNING,
        ev.AGENT_MESSAGE_RECEIVED, ev.MESSAGE_DELIVERED, ev.MESSAGE_PROCESSED,
        ev.AGENT_MESSAGE_RECEIVED, ev.MESSAGE_PROCESSED, ev.JOB_COMPLETED,
    ]
    returned = [e for r in results if isinstance(r, Outcome) for e in r.events]
    assert returned == after[len(before):]
    final = results[-1]
    assert isinstance(final, Outcome) and final.projection is not None and final.projection.job.status == "completed"
    assert await verify(db) == []


async def test_steps_after_a_command_that_appended_nothing_are_dropped(db: Database, service: Service, path: str) -> None:
    job_id, fence = await claimed_job(db, service)
    await service.execute(job_id, start(job_id), fence)
    before = await stream(db, job_id)
    # A message to an agent the job does not have is refused; the router's step, valid on its
    # own, is dropped with it. (A second start under the same lease would be the same command
    # again, answered by the first one's commit: tests/store/test_exactly_once.py.)
    ghost = DeliverExternal("ghost", message(job_id, "ext-1", "external", "ghost"))
    results = await chain(service, path, job_id, [ghost, router_step(job_id, chained=True), sink_step(job_id)], fence)
    assert kinds(results) == ["not_found", "dropped", "dropped"]
    assert [str(r) for r in results[1:]] == ["the command it follows appended nothing"] * 2
    assert await stream(db, job_id) == before
    alone = await service.execute(job_id, router_step(job_id, chained=True), fence)
    assert [e.type for e in alone.events][-1] == ev.MESSAGE_PROCESSED
    assert await verify(db) == []


async def test_a_chain_of_a_job_cancelled_meanwhile_appends_nothing(db: Database, service: Service, path: str) -> None:
    job_id, fence = await claimed_job(db, service)
    await service.execute(job_id, CancelJob("operator"))  # its terminal commit dropped the lease
    before = await stream(db, job_id)
    results = await chain(service, path, job_id, [start(job_id), router_step(job_id, chained=True), sink_step(job_id)], fence)
    assert kinds(results) == ["LeaseLost", "dropped", "dropped"]
    assert await stream(db, job_id) == before
    assert await verify(db) == []


async def test_a_chained_step_is_dropped_when_another_message_waits_before_its_own(
    db: Database, service: Service, path: str
) -> None:
    job_id, fence = await claimed_job(db, service)
    await service.execute(job_id, start(job_id), fence)
    await service.execute(job_id, DeliverExternal("sink", message(job_id, "ext-1", "operator", "sink")))
    results = await chain(service, path, job_id, [router_step(job_id, chained=False), sink_step(job_id)], fence)
    assert kinds(results) == ["Outcome", "dropped"]
    assert await sink_depth(db, job_id) == 2  # ext-1, then fwd-1: both wait for the sink's own task
    assert (await stream(db, job_id))[-1].type == ev.MESSAGE_PROCESSED  # the router's step, nothing after
    assert await verify(db) == []


async def test_a_chained_step_is_dropped_when_the_job_is_paused(db: Database, service: Service, path: str) -> None:
    job_id, fence = await claimed_job(db, service)
    await service.execute(job_id, start(job_id), fence)
    await service.execute(job_id, PauseJob("operator"))
    # The router's step was in flight when the pause committed: it still commits (SPEC §3.5);
    # the sink's step, decided ahead, is not in flight and waits for the resume.
    results = await chain(service, path, job_id, [router_step(job_id, chained=False), sink_step(job_id)], fence)
    assert kinds(results) == ["Outcome", "dropped"]
    assert await sink_depth(db, job_id) == 1
    assert await verify(db) == []
