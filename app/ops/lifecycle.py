"""What a commit of this process tells an operator (SPEC C.3.2–C.3.3).

`committed(stream_id, events)` is called by the write path after every commit: it counts the
events by type and writes one INFO line per job lifecycle transition, node event and bundle
change, with the job's id in `job_id`. Agent and message events are counted, never logged: a
busy node commits thousands of them a second.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from app.domain import events as ev
from app.ops import metrics

log = logging.getLogger("mirror_neuron.lifecycle")


def _fingerprint(p: dict[str, Any], key: str = "fingerprint") -> str:
    value = p.get(key)
    return str(value)[:12] if value else "-"


# One sentence per event type, from its payload (SPEC §4). Types not listed are not logged.
_SENTENCES: dict[str, Callable[[dict[str, Any]], str]] = {
    ev.JOB_SUBMITTED: lambda p: f"job submitted (graph {p.get('manifest', {}).get('graph_id')})",
    ev.JOB_QUEUED: lambda p: f"job admitted by node {p.get('node')}",
    ev.JOB_SCHEDULED: lambda p: f"job scheduled on node {p.get('node')}",
    ev.JOB_RUNNING: lambda p: "job started",
    ev.JOB_PAUSED: lambda p: f"job paused: {p.get('reason')}",
    ev.JOB_RESUMED: lambda p: f"job resumed: {p.get('reason')}",
    ev.JOB_RECOVERY_STARTED: lambda p: (
        f"job recovery started on node {p.get('node')} from node {p.get('from_node')} "
        f"(cause {p.get('cause')}, attempt {p.get('attempt')})"
    ),
    ev.JOB_COMPLETED: lambda p: "job completed",
    ev.JOB_FAILED: lambda p: f"job failed: {p.get('reason')}",
    ev.JOB_CANCELLED: lambda p: f"job cancelled: {p.get('reason')}",
    ev.NODE_REGISTERED: lambda p: f"node {p.get('node')} registered (incarnation {p.get('incarnation')})",
    ev.NODE_LOST: lambda p: (
        f"node {p.get('node')} declared lost by {p.get('detected_by')} "
        f"(last heartbeat {p.get('last_heartbeat_at')})"
    ),
    ev.NODE_STOPPED: lambda p: f"node {p.get('node')} stopped (incarnation {p.get('incarnation')})",
    ev.JOBS_CLEANED: lambda p: f"cleanup deleted {len(p.get('job_ids', []))} job(s): {', '.join(p.get('job_ids', []))}",
    ev.BUNDLE_REGISTERED: lambda p: (
        f"bundle {p.get('bundle_id')} registered ({p.get('reason')}, fingerprint {_fingerprint(p)})"
    ),
    ev.BUNDLE_RELOADED: lambda p: (
        f"bundle {p.get('bundle_id')} reloaded ({p.get('reason')}, fingerprint "
        f"{_fingerprint(p, 'previous_fingerprint')} -> {_fingerprint(p, 'current_fingerprint')})"
    ),
    ev.BUNDLE_RELOAD_REJECTED: lambda p: (
        f"bundle {p.get('bundle_id')} reload rejected ({p.get('reason')}): {'; '.join(map(str, p.get('errors', [])))}"
    ),
}


def _counted(event: Any) -> None:
    if event.type == ev.JOB_RECOVERY_STARTED:
        metrics.recovery_started(str(event.payload.get("cause")))
    elif event.type == ev.NODE_LOST:
        metrics.node_declared_lost()


def committed(stream_id: str, events: Iterable[Any]) -> None:
    """Count and log what this process just committed to `stream_id`."""
    events = list(events)
    metrics.events_committed(stream_id, events)
    for event in events:
        sentence = _SENTENCES.get(event.type)
        if sentence is None:
            continue
        _counted(event)
        if log.isEnabledFor(logging.INFO):
            log.info("%s", sentence(event.payload), extra={"job_id": event.job_id})
