"""Optional OpenTelemetry spans (SPEC C.3.5): HTTP requests, write transactions and agent steps.

With the `otel` extra installed and OTEL_EXPORTER_OTLP_ENDPOINT set, `configure_from_env` installs
a tracer exporting over OTLP/HTTP (the exporter reads the standard OTEL_* variables itself);
otherwise every function here is a no-op costing one test of a global. Tests install a provider
of their own (the SDK's in-memory exporter) with `install`.

Parenting: a request's span is current while its handler runs, so the command it hands to the
write path captures it (`current()`); the group commit runs in another task, so the write
transaction's span is started under the first command's captured context and every other
command of the batch gets a span of the same extent under its own context, linked to it. One
trace therefore shows a submit and the commit that made it durable, batched or not.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

_tracer: Any = None
_provider: Any = None


def install(provider: Any) -> None:
    """Trace through `provider` (an SDK TracerProvider) from now on."""
    global _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer("mirror_neuron")


def uninstall() -> None:
    """Stop tracing (tests)."""
    global _tracer, _provider
    _tracer = _provider = None


def enabled() -> bool:
    """Whether spans are recorded."""
    return _tracer is not None


def configure_from_env(node: str) -> bool:
    """Install an OTLP exporter when OTEL_EXPORTER_OTLP_ENDPOINT is set and the `otel` extra is installed."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but the otel extra is not installed: no traces")
        return False
    service = os.environ.get("OTEL_SERVICE_NAME", "mirror-neuron")
    provider = TracerProvider(resource=Resource.create({"service.name": service, "service.instance.id": node}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    install(provider)
    return True


def shutdown() -> None:
    """Flush and stop the exporter (process exit)."""
    if _provider is not None and hasattr(_provider, "shutdown"):
        _provider.shutdown()


def current() -> Any:
    """The current trace context, to hand to work that another task does (None when off)."""
    if _tracer is None:
        return None
    from opentelemetry import context

    return context.get_current()


@contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """A span around the block, child of the current one; yields it (None when off)."""
    if _tracer is None:
        yield None
        return
    with _tracer.start_as_current_span(name, attributes=dict(attributes or {})) as current_span:
        yield current_span


@contextmanager
def http_request(method: str, path: str, headers: Sequence[tuple[bytes, bytes]]) -> Iterator[Any]:
    """The server span of one API request, continuing a `traceparent` the client sent."""
    if _tracer is None:
        yield None
        return
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    carrier = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in headers}
    parent = propagate.extract(carrier)
    attributes = {"http.request.method": method, "url.path": path}
    with _tracer.start_as_current_span(f"{method}", context=parent, kind=SpanKind.SERVER, attributes=attributes) as s:
        yield s


def http_answered(request_span: Any, method: str, route: str, status: int) -> None:
    """Name the request's span after its route template and record the status."""
    if request_span is None:
        return
    request_span.update_name(f"{method} {route}")
    request_span.set_attribute("http.route", route)
    request_span.set_attribute("http.response.status_code", status)


@contextmanager
def write_transaction(parents: Sequence[Any], job_ids: Sequence[str]) -> Iterator[None]:
    """Spans of one write transaction: under the first command's context, and one per other context."""
    if _tracer is None:
        yield
        return
    from opentelemetry.trace import Link

    first = parents[0] if parents else None
    others = {id(p): p for p in parents if p is not None and p is not first}
    attributes = {"mirror_neuron.batch_commands": len(job_ids), "mirror_neuron.job_ids": sorted(set(job_ids))[:20]}
    started = time.time_ns()
    with _tracer.start_as_current_span("mirror_neuron.write", context=first, attributes=attributes) as main:
        try:
            yield
        finally:
            ended = time.time_ns()
            link = [Link(main.get_span_context())]
            for parent in others.values():
                _tracer.start_span(
                    "mirror_neuron.write", context=parent, links=link, start_time=started, attributes=attributes
                ).end(end_time=ended)
