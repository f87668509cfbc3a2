"""`JobRunner.chain_after`: which builtin steps are decided ahead, to commit right after a command.

The runner is built over a job folded from events; nothing here touches a database (the
write path's side of a chain, dropping what is no longer valid, is in tests/store/test_chains.py).
"""

from __future__ import annotations

from typing import Any, cast

from app.domain import events as ev
from app.domain.canonical import format_ms
from app.domain.events import Event, NewEvent
from app.domain.job import CommitStep, FailStep, StartJob, submitted_payload
from app.domain.manifest import normalize_manifest
from app.domain.runtime_state import JobRuntime
from app.runtime.runner import MAX_CHAIN, JobRunner, NodeContext
from app.store.leases import Fence

JOB = "chain_v1-1711623600000-1c50c86dc919"
T0 = 1_711_623_600_000


def manifest(nodes: list[dict[str, Any]], edges: list[tuple[str, str]], entry: str = "router") -> dict[str, Any]:
    raw = {
        "manifest_version": "1.0",
        "graph_id": "chain_v1",
        "entrypoints": [entry],
        "nodes": nodes,
        "edges": [{"from_node": a, "to_node": b, "message_type": "*"} for a, b in edges],
    }
    return normalize_manifest(raw)


ROUTER: dict[str, Any] = {"node_id": "router", "agent_type": "router"}
SINK: dict[str, Any] = {"node_id": "sink", "agent_type": "aggregator", "config": {"complete_after": 1}}


def seed(to: str, message_id: str) -> dict[str, Any]:
    envelope = {"message_id": message_id, "job_id": JOB, "from": "runtime", "to": to, "type": "init", "class": "command"}
    return {"envelope": envelope, "headers": {}, "body": {"n": 1}, "artifacts": [], "stream": None}


def runner(graph: dict[str, Any], *more: NewEvent) -> JobRunner:
    """A runner over a queued job (or further, with `more` events)."""
    job = JobRuntime(JOB)
    submitted = NewEvent(
        ev.JOB_SUBMITTED,
        submitted_payload(manifest=graph, bundle=None, idempotency_key=None, request_sha256="a" * 64),
    )
    for seq, new in enumerate((submitted, NewEvent(ev.JOB_QUEUED, {"node": "n1"}), *more), start=1):
        job.apply(
            Event(
                position=seq, stream_id=JOB, sequence=seq, event_id=f"e{seq}", type=new.type,
                timestamp=format_ms(T0 + seq), job_id=JOB, agent_id=new.agent_id, payload=new.payload,
                hash=f"h{seq}",
            )
        )
    ctx = NodeContext(
        service=cast(Any, None), settings=cast(Any, None), node_name="n1", incarnation="inc-a",
        pools=cast(Any, None), base_env={}, clock=lambda: T0,
    )
    return JobRunner(ctx, job, Fence("inc-a", 1), {})


def running(*deliveries: tuple[str, dict[str, Any]]) -> tuple[NewEvent, ...]:
    """The events of a start that delivered `deliveries`."""
    delivered = tuple(
        NewEvent(ev.MESSAGE_DELIVERED, {"message": m, "route": "seed", "edge_id": None}, to) for to, m in deliveries
    )
    return (NewEvent(ev.JOB_SCHEDULED, {"node": "n1"}), *delivered, NewEvent(ev.JOB_RUNNING, {}))


def start(*seeds: dict[str, Any]) -> StartJob:
    return StartJob("n1", seeds)


def summary(chain: list[CommitStep | FailStep]) -> list[tuple[str, str, bool]]:
    return [
        (type(c).__name__, c.agent_id, c.completion is not None if isinstance(c, CommitStep) else True) for c in chain
    ]


def test_a_start_chains_the_router_and_the_aggregator_that_completes_the_job() -> None:
    r = runner(manifest([ROUTER, SINK], [("router", "sink")]))
    chain = r.chain_after(start(seed("router", "s1")))
    assert summary(chain) == [("CommitStep", "router", False), ("CommitStep", "sink", True)]
    router_step, sink_step = chain
    assert isinstance(router_step, CommitStep) and isinstance(sink_step, CommitStep)
    assert router_step.chained and sink_step.chained
    assert (router_step.message_id, router_step.expected_processed) == ("s1", 0)
    # The aggregator's step handles exactly the message the router's step delivers.
    forwarded = [e for e in router_step.events if e.type == ev.MESSAGE_DELIVERED]
    assert [e.agent_id for e in forwarded] == ["sink"]
    assert sink_step.message_id == forwarded[0].payload["message"]["envelope"]["message_id"]
    assert sink_step.events[0].type == ev.AGENT_MESSAGE_RECEIVED
    assert sink_step.completion is not None and sink_step.completion.agent_id == "sink"


def test_an_agent_given_two_messages_in_the_chain_is_left_to_its_own_task() -> None:
    r = runner(manifest([ROUTER, SINK], [("router", "sink")]))
    assert r.chain_after(start(seed("router", "s1"), seed("router", "s2"))) == []
    # Two edges to the same aggregator: two copies (SPEC §6.4), so only the router is chained.
    twice = runner(manifest([ROUTER, SINK], [("router", "sink"), ("router", "sink")]))
    assert summary(twice.chain_after(start(seed("router", "s1")))) == [("CommitStep", "router", False)]


def test_an_agent_with_a_waiting_message_is_not_chained() -> None:
    waiting = seed("sink", "earlier")
    r = runner(manifest([ROUTER, SINK], [("router", "sink")]), *running(("router", seed("router", "s1")), ("sink", waiting)))
    router_step = r.commits.decide(r.job.agents["router"], r.job.agents["router"].queue[0], 0)
    assert r.chain_after(router_step) == []


def test_executors_and_modules_are_never_chained() -> None:
    nodes = [ROUTER, {"node_id": "exec", "agent_type": "executor", "config": {"command": ["true"]}}]
    r = runner(manifest(nodes, [("router", "exec")]))
    assert summary(r.chain_after(start(seed("router", "s1")))) == [("CommitStep", "router", False)]
    entry_exec = runner(manifest(nodes, [("exec", "router")], entry="exec"))
    assert entry_exec.chain_after(start(seed("exec", "s1"))) == []


def test_nothing_is_chained_after_a_step_of_a_job_that_is_not_running() -> None:
    events = (*running(("router", seed("router", "s1"))), NewEvent(ev.JOB_PAUSED, {"reason": "operator"}))
    r = runner(manifest([ROUTER, SINK], [("router", "sink")]), *events)
    router_step = r.commits.decide(r.job.agents["router"], r.job.agents["router"].queue[0], 0)
    assert r.chain_after(router_step) == []


def test_the_chain_stops_at_the_step_that_ends_the_job() -> None:
    sinks = [{"node_id": f"sink{i}", "agent_type": "aggregator", "config": {"complete_after": 1}} for i in range(3)]
    r = runner(manifest([ROUTER, *sinks], [("router", f"sink{i}") for i in range(3)]))
    assert summary(r.chain_after(start(seed("router", "s1")))) == [
        ("CommitStep", "router", False),
        ("CommitStep", "sink0", True),
    ]


def test_a_handler_that_raises_ends_the_chain_with_its_failure() -> None:
    broken = {"node_id": "sink", "agent_type": "aggregator", "config": {"complete_after": 1}}
    r = runner(manifest([ROUTER, broken], [("router", "sink")]))
    r.job.agents["sink"].aggregate = cast(Any, None)  # the handler will raise on it
    chain = r.chain_after(start(seed("router", "s1")))
    assert summary(chain) == [("CommitStep", "router", False), ("FailStep", "sink", True)]
    failed = chain[-1]
    assert isinstance(failed, FailStep) and failed.error.startswith("agent sink raised")
    assert [e.type for e in failed.events] == [ev.AGENT_MESSAGE_RECEIVED]


def test_a_long_line_of_routers_is_cut_at_max_chain() -> None:
    count = MAX_CHAIN + 5
    routers = [{"node_id": f"r{i}", "agent_type": "router"} for i in range(count)]
    r = runner(manifest(routers, [(f"r{i}", f"r{i + 1}") for i in range(count - 1)], entry="r0"))
    chain = r.chain_after(start(seed("r0", "s1")))
    assert [c.agent_id for c in chain] == [f"r{i}" for i in range(MAX_CHAIN)]
