"""The JSON shapes of the API's answers (SPEC §2.20, §9.6, §10.3): one source for the server's OpenAPI
document and the Python client's typed results. Plain msgspec Structs: no HTTP framework here."""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class ErrorBody(msgspec.Struct):
    """The error envelope."""

    error: str


class InvalidRequest(msgspec.Struct):
    """A 400: the error sentence, and for a manifest that fails validation every message in order."""

    error: str
    errors: list[str] = msgspec.field(default_factory=list)


class ValidationErrorBody(msgspec.Struct):
    """Manifest validation failure: every message in validation order."""

    error: str
    errors: list[str]


class Health(msgspec.Struct):
    """Liveness and readiness."""

    status: str


class Unready(msgspec.Struct):
    """Readiness failure."""

    status: str
    error: str


class Submitted(msgspec.Struct):
    """A submitted (or replayed) job."""

    id: str
    job_id: str
    status: str


class StatusChange(msgspec.Struct):
    """Answer to cancel, pause and resume."""

    status: str
    job_id: str


class MessageAccepted(msgspec.Struct):
    """An external message was delivered."""

    job_id: str
    agent_id: str
    message_id: str


class EventRecord(msgspec.Struct):
    """An event of a job stream (SPEC §2.20)."""

    sequence: int
    position: int
    event_id: str
    job_id: str
    type: str
    timestamp: str
    agent_id: str | None
    payload: dict[str, Any]
    hash: str
    # SPEC C.1.3: how `hash` was computed; "pyjson-sha256" marks events written before v1.1.
    hash_alg: Literal["jcs-sha256", "pyjson-sha256"]


class EventPage(msgspec.Struct):
    """Events in ascending order and where to continue."""

    data: list[EventRecord]
    next_after: int | None


class ManifestRef(msgspec.Struct):
    """Where a job's manifest came from."""

    graph_id: str
    manifest_version: Any
    manifest_path: str | None
    job_path: str | None


class BundleRef(msgspec.Struct):
    """The bundle version a job was submitted from."""

    bundle_id: str
    fingerprint: str


class JobRecord(msgspec.Struct):
    """SPEC §2.20 JobRecord: the fields of the job projection (`app.domain.projection.JobView`) that the API
    shows, as JSON types. These names are the list `mirror-neuron audit` compares with its replay."""

    job_id: str
    graph_id: str
    job_name: str
    status: str
    status_reason: str | None
    daemon: bool
    submitted_at: str
    updated_at: str
    root_agent_ids: list[str]
    placement_policy: str
    recovery_policy: str
    max_agent_restart_attempts: int | None
    result: dict[str, Any] | None
    node: str | None
    recovery_count: int
    last_sequence: int
    last_hash: str
    manifest_ref: ManifestRef
    bundle: BundleRef | None
    idempotency_key: str | None


class JobSummary(msgspec.Struct):
    """SPEC §2.20 JobSummary."""

    job_id: str
    graph_id: str
    job_name: str
    status: str
    submitted_at: str
    updated_at: str
    placement_policy: str
    recovery_policy: str
    live: bool = msgspec.field(name="live?")
    executor_count: int = 0
    active_executors: int = 0
    nodes: list[str] = msgspec.field(default_factory=list)
    sandbox_names: list[str] = msgspec.field(default_factory=list)
    last_event: str | None = None


class AgentLease(msgspec.Struct):
    """The agent's current or latest executor lease."""

    lease_id: str | None
    pool: str | None
    slots: int | None


class AgentSummary(msgspec.Struct):
    """SPEC §2.20 AgentSummary."""

    agent_id: str
    agent_type: str
    type: str
    role: str | None
    assigned_node: str | None
    processed_messages: int
    mailbox_depth: int
    paused: bool = msgspec.field(name="paused?")
    last_heartbeat_at: str | None = None
    live: bool = msgspec.field(name="live?", default=False)
    status: str = "ready"
    running: bool = msgspec.field(name="running?", default=False)
    last_error: str | None = None
    sandbox_name: str | None = None
    lease: AgentLease | None = None


class SandboxSummary(msgspec.Struct):
    """SPEC §2.20 SandboxSummary."""

    agent_id: str
    sandbox_name: str
    exit_code: int | None
    pool: str | None
    timestamp: str


class JobDetails(msgspec.Struct):
    """SPEC §2.9."""

    job: JobRecord
    summary: JobSummary
    agents: list[AgentSummary]
    recent_events: list[EventRecord]
    sandboxes: list[SandboxSummary]


class JobList(msgspec.Struct):
    """SPEC §2.8."""

    data: list[JobSummary]
    next_cursor: str | None


class Cleanup(msgspec.Struct):
    """SPEC §2.15."""

    deleted_count: int
    deleted_jobs: list[str]


class PoolStats(msgspec.Struct):
    """SPEC §7.6 pool statistics."""

    capacity: int
    in_use: int
    available: int
    queued: int
    active: int


class NodeSummary(msgspec.Struct):
    """SPEC §10.3."""

    name: str
    status: str
    started_at: str
    last_heartbeat_at: str
    connected_nodes: list[str]
    is_self: bool = msgspec.field(name="self?")
    scheduler_hint: str = "remote_member"
    api_enabled: bool = True
    runtime_enabled: bool = True
    active_jobs: int = 0
    executor_pools: dict[str, PoolStats] = msgspec.field(default_factory=dict)
    hardware: dict[str, Any] = msgspec.field(default_factory=dict)


class NodeList(msgspec.Struct):
    """SPEC §2.6."""

    data: list[NodeSummary]


class SystemSummary(msgspec.Struct):
    """SPEC §2.5."""

    nodes: list[NodeSummary]
    jobs: list[JobSummary]
    jobs_total: int
    job_counts: dict[str, int]


class ReloadSettings(msgspec.Struct):
    """Effective reload mode and interval."""

    mode: str
    interval_seconds: float


class ReloadError(msgspec.Struct):
    """The latest rejected reload after the current version."""

    timestamp: str
    fingerprint: str | None
    errors: list[str]


class BundleHistoryEntry(msgspec.Struct):
    """One accepted bundle version."""

    version: int
    event: str
    fingerprint: str
    timestamp: str
    reason: str


class BundleSummary(msgspec.Struct):
    """SPEC §9.6 BundleSummary."""

    bundle_id: str
    graph_id: str
    job_name: str
    manifest_version: Any
    path: str
    fingerprint: str
    version: int
    registered_at: str
    last_reloaded: str
    reload: ReloadSettings
    last_reload_error: ReloadError | None


class BundleDetail(BundleSummary):
    """SPEC §9.6 BundleDetail."""

    manifest: dict[str, Any] = msgspec.field(default_factory=dict)
    payload_files: list[str] = msgspec.field(default_factory=list)
    history: list[BundleHistoryEntry] = msgspec.field(default_factory=list)


class BundleList(msgspec.Struct):
    """SPEC §2.16."""

    data: list[BundleSummary]


class ReloadUnchanged(msgspec.Struct):
    """Reload found no change."""

    bundle_id: str
    changed: bool
    reloaded: bool
    message: str


class Reloaded(msgspec.Struct):
    """Reload accepted a new version."""

    bundle_id: str
    changed: bool
    reloaded: bool
    previous_fingerprint: str | None
    current_fingerprint: str
    reason: str
    message: str
    timestamp: str


class Uploaded(msgspec.Struct):
    """An accepted bundle upload (SPEC C.2.2, C.5.3); `changed` when a bundle event was appended."""

    bundle_id: str
    fingerprint: str
    bundle_path: str
    manifest: dict[str, Any]
    changed: bool
