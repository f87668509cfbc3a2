"""The event catalogue (SPEC §4) and the two event shapes: decided and recorded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.domain.canonical import JCS

# §4.2 lifecycle events: they move `updated_at`.
JOB_SUBMITTED = "job_submitted"
JOB_QUEUED = "job_queued"
JOB_SCHEDULED = "job_scheduled"
JOB_RUNNING = "job_running"
JOB_PAUSED = "job_paused"
JOB_RESUMED = "job_resumed"
JOB_RECOVERY_STARTED = "job_recovery_started"
JOB_COMPLETED = "job_completed"
JOB_FAILED = "job_failed"
JOB_CANCELLED = "job_cancelled"

# §4.3 agent and message events.
MESSAGE_DELIVERED = "message_delivered"
DEAD_LETTER = "dead_letter"
AGENT_MESSAGE_RECEIVED = "agent_message_received"
MESSAGE_PROCESSED = "message_processed"
AGENT_RECOVERED = "agent_recovered"
EXECUTOR_LEASE_REQUESTED = "executor_lease_requested"
EXECUTOR_LEASE_ACQUIRED = "executor_lease_acquired"
EXECUTOR_ATTEMPT_FAILED = "executor_attempt_failed"
EXECUTOR_LEASE_RELEASED = "executor_lease_released"
SANDBOX_JOB_COMPLETED = "sandbox_job_completed"
AGGREGATOR_RECEIVED = "aggregator_received"
AGGREGATOR_DUPLICATE_IGNORED = "aggregator_duplicate_ignored"
SENSOR_OBSERVED = "sensor_observed"

# §4.4 bundle events.
BUNDLE_REGISTERED = "bundle_registered"
BUNDLE_RELOADED = "bundle_reloaded"
BUNDLE_RELOAD_REJECTED = "bundle_reload_rejected"

# §4.5 system events.
NODE_REGISTERED = "node_registered"
NODE_STOPPED = "node_stopped"
NODE_LOST = "node_lost"
JOBS_CLEANED = "jobs_cleaned"

LIFECYCLE_TYPES = frozenset(
    {
        JOB_SUBMITTED,
        JOB_QUEUED,
        JOB_SCHEDULED,
        JOB_RUNNING,
        JOB_PAUSED,
        JOB_RESUMED,
        JOB_RECOVERY_STARTED,
        JOB_COMPLETED,
        JOB_FAILED,
        JOB_CANCELLED,
    }
)
TERMINAL_TYPES = frozenset({JOB_COMPLETED, JOB_FAILED, JOB_CANCELLED})
AGENT_TYPES = frozenset(
    {
        MESSAGE_DELIVERED,
        DEAD_LETTER,
        AGENT_MESSAGE_RECEIVED,
        MESSAGE_PROCESSED,
        AGENT_RECOVERED,
        EXECUTOR_LEASE_REQUESTED,
        EXECUTOR_LEASE_ACQUIRED,
        EXECUTOR_ATTEMPT_FAILED,
        EXECUTOR_LEASE_RELEASED,
        SANDBOX_JOB_COMPLETED,
        AGGREGATOR_RECEIVED,
        AGGREGATOR_DUPLICATE_IGNORED,
        SENSOR_OBSERVED,
    }
)
BUNDLE_TYPES = frozenset({BUNDLE_REGISTERED, BUNDLE_RELOADED, BUNDLE_RELOAD_REJECTED})
SYSTEM_TYPES = frozenset({NODE_REGISTERED, NODE_STOPPED, NODE_LOST, JOBS_CLEANED})
# Custom events (executor stdout, module actions) may not reuse any of these names (§4.3).
RESERVED_TYPES = LIFECYCLE_TYPES | AGENT_TYPES | BUNDLE_TYPES | SYSTEM_TYPES

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
ALL_STATUSES = ("pending", "queued", "running", "paused", "completed", "failed", "cancelled")

SYSTEM_STREAM = "system"
JOB_COORDINATOR = "job_coordinator"


def bundle_stream(bundle_id: str) -> str:
    """Return the stream id of a bundle's events."""
    return f"bundle:{bundle_id}"


@dataclass(frozen=True)
class NewEvent:
    """An event decided by the domain, before the store gives it identity and position."""

    type: str
    payload: dict[str, Any] = field(default_factory=dict)
    agent_id: str | None = None


@dataclass(frozen=True)
class Event:
    """An event as recorded in the log (SPEC §2.20 plus its stream id)."""

    position: int
    stream_id: str
    sequence: int
    event_id: str
    type: str
    timestamp: str
    job_id: str | None
    agent_id: str | None
    payload: dict[str, Any]
    hash: str
    # How `hash` was computed (SPEC C.1.3): "jcs-sha256" from v1.1 on, "pyjson-sha256" before.
    hash_alg: str = JCS
    # The payload's canonical JSON, set by sealing (which computes it for the hash; the row then
    # stores the same text) and None elsewhere; not part of the event's value.
    payload_json: str | None = field(default=None, compare=False, repr=False)

    def to_api(self) -> dict[str, Any]:
        """Return the SPEC §2.20 Event record."""
        return {
            "sequence": self.sequence,
            "position": self.position,
            "event_id": self.event_id,
            "job_id": self.job_id,
            "type": self.type,
            "timestamp": self.timestamp,
            "agent_id": self.agent_id,
            "payload": self.payload,
            "hash": self.hash,
            "hash_alg": self.hash_alg,
        }
