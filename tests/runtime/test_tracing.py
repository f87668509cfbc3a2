"""OpenTelemetry spans (SPEC C.3.5) with the SDK's in-memory exporter: a submit's trace holds its
commit, and agent steps are spans carrying job_id, agent_id and agent_type with their commits below."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from app.ops import tracing
from tests.runtime.conftest import Harness


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.uninstall()
        provider.shutdown()


def _children(finished: Any, parent: Any) -> list[Any]:
    return [
        s for s in finished
        if s.parent is not None and s.parent.span_id == parent.context.span_id
        and s.context.trace_id == parent.context.trace_id
    ]


async def test_a_submit_and_its_steps_are_traced_down_to_their_commits(
    harness: Harness, spans: InMemorySpanExporter
) -> None:
    job_id = await harness.submit({"bundle_id": "shell_python_chain_v1"})
    assert (await harness.wait_status(job_id))["job"]["status"] == "completed"
    finished = spans.get_finished_spans()

    submits = [s for s in finished if s.name == "POST /api/v1/jobs"]
    assert len(submits) == 1 and submits[0].kind == SpanKind.SERVER
    assert submits[0].attributes["http.response.status_code"] == 201
    commits = [s for s in _children(finished, submits[0]) if s.name == "mirror_neuron.write"]
    assert len(commits) == 1 and job_id in commits[0].attributes["mirror_neuron.job_ids"]

    steps = [s for s in finished if s.name == "mirror_neuron.agent_step"]
    agents = {e["agent_id"] for e in await harness.events(job_id) if e["type"] == "message_processed"}
    assert {s.attributes["agent_id"] for s in steps} == agents
    for step in steps:
        assert step.attributes["job_id"] == job_id
        assert step.attributes["agent_type"] in ("executor", "router", "aggregator", "module", "sensor")
    executor_steps = [s for s in steps if s.attributes["agent_type"] == "executor"]
    assert executor_steps
    for step in executor_steps:  # received, lease requested/acquired, the result: each its commit
        assert any(c.name == "mirror_neuron.write" for c in _children(finished, step))
