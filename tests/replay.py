"""An auditor's replay, written independently of app.domain: hash chain and job state from events."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785

TERMINAL = {"job_completed": "completed", "job_failed": "failed", "job_cancelled": "cancelled"}
STATUS = {"job_queued": "queued", "job_running": "running", "job_paused": "paused", "job_resumed": "running", **TERMINAL}
LIFECYCLE = {
    "job_submitted", "job_queued", "job_scheduled", "job_running", "job_paused", "job_resumed",
    "job_recovery_started", "job_completed", "job_failed", "job_cancelled",
}


def _doubles(value: Any) -> Any:
    """Integers beyond ±(2^53-1) as the doubles an I-JSON reader holds (SPEC C.1.2)."""
    if isinstance(value, dict):
        return {k: _doubles(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_doubles(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53 - 1:
        return float(value)
    return value


def chain_errors(job_id: str, events: list[dict[str, Any]]) -> list[str]:
    """Recompute every event hash of a job stream; return the sequences that do not match.

    Each event by its `hash_alg` (SPEC C.1.3): RFC 8785 by the `rfc8785` package for jcs-sha256,
    json.dumps for pyjson-sha256. A record without `hash_alg` was recorded before v1.1 (the
    golden histories of v1.0), when every event was pyjson-sha256.
    """
    errors = []
    prev = ""
    seen_jcs = False
    for expected_sequence, event in enumerate(events, start=1):
        if event["sequence"] != expected_sequence:
            errors.append(f"gap: expected sequence {expected_sequence}, got {event['sequence']}")
        material = {
            "prev_hash": prev, "stream_id": job_id, "sequence": event["sequence"], "event_id": event["event_id"],
            "type": event["type"], "timestamp": event["timestamp"], "agent_id": event["agent_id"],
            "payload": event["payload"],
        }
        alg = event.get("hash_alg", "pyjson-sha256")
        if alg == "pyjson-sha256" and seen_jcs:
            errors.append(f"pyjson-sha256 after jcs-sha256 at sequence {event['sequence']}")
        seen_jcs = seen_jcs or alg == "jcs-sha256"
        if alg == "jcs-sha256":
            data = rfc8785.dumps(_doubles(material))
        else:
            text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            data = text.encode()
        digest = hashlib.sha256(data).hexdigest()
        if digest != event["hash"]:
            errors.append(f"hash mismatch at sequence {event['sequence']}")
        prev = event["hash"]
    return errors


def replay(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold a job's events into the event-derived fields of JobRecord and per-agent counters."""
    job: dict[str, Any] = {"status": "pending", "status_reason": None, "result": None, "node": None,
                           "recovery_count": 0, "nodes": set()}
    agents: dict[str, dict[str, int]] = {}
    for event in events:
        kind, payload, agent = event["type"], event["payload"], event["agent_id"]
        if kind == "job_submitted":
            job["submitted_at"] = event["timestamp"]
            agents = {n["node_id"]: {"processed_messages": 0, "mailbox_depth": 0} for n in payload["manifest"]["nodes"]}
        if kind in STATUS:
            job["status"] = STATUS[kind]
            job["status_reason"] = payload.get("reason") if kind in ("job_paused", "job_failed", "job_cancelled") else None
        if kind in TERMINAL:
            job["result"] = payload["result"]
        if kind in ("job_scheduled", "job_recovery_started"):
            job["node"] = payload["node"]
            job["nodes"].add(payload["node"])
        if kind == "job_recovery_started":
            job["recovery_count"] += 1
        if kind in LIFECYCLE:
            job["updated_at"] = event["timestamp"]
        if agent in agents:
            counters = agents[agent]
            if kind == "message_delivered":
                counters["mailbox_depth"] += 1
            elif kind == "agent_message_received":
                counters["mailbox_depth"] -= 1
            elif kind == "message_processed":
                counters["processed_messages"] += 1
            elif kind == "agent_recovered":
                counters["mailbox_depth"] = payload["mailbox_depth"]
        job["last_sequence"] = event["sequence"]
        job["last_hash"] = event["hash"]
    job["nodes"] = sorted(job["nodes"])
    return {"job": job, "agents": agents}


def compare_with_api(events: list[dict[str, Any]], details: dict[str, Any]) -> list[str]:
    """Differences between the replay of `events` and `GET /jobs/{id}` (event-derived fields only)."""
    replayed = replay(events)
    record = details["job"]
    differences = [
        f"job.{key}: api={record.get(key)!r} replay={value!r}"
        for key, value in replayed["job"].items()
        if key != "nodes" and record.get(key) != value
    ]
    if details["summary"]["nodes"] != replayed["job"]["nodes"]:
        differences.append(f"summary.nodes: api={details['summary']['nodes']} replay={replayed['job']['nodes']}")
    inflight_agents = {a["agent_id"]: a for a in details["agents"]}
    for agent_id, counters in replayed["agents"].items():
        api_agent = inflight_agents.get(agent_id)
        if api_agent is None:
            differences.append(f"agent {agent_id} missing from the API")
            continue
        for key, value in counters.items():
            if api_agent[key] != value:
                differences.append(f"agents[{agent_id}].{key}: api={api_agent[key]} replay={value}")
    return differences + chain_errors(record["job_id"], events)
