"""Response shapes for the OpenAPI document (SPEC §2, §9.6, §10.3); controllers return the same keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    Components,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
    SecurityRequirement,
    SecurityScheme,
)

from app.domain.events import ALL_STATUSES
from app.domain.manifest import (
    AGENT_TYPE_ALIASES,
    AGENT_TYPES,
    MAX_EDGES,
    MAX_ID_LENGTH,
    MAX_NODES,
    RECOVERY_MODES,
)
from app.domain.messages import CONTENT_ENCODINGS


class ErrorBody(msgspec.Struct):
    """The error envelope."""

    error: str


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
    """SPEC §2.20 JobRecord."""

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
    previous_fingerprint: str | None  # null when the reload registered a new directory (SPEC C.5.5)
    current_fingerprint: str
    reason: str
    message: str
    timestamp: str


class Uploaded(msgspec.Struct):
    """An accepted bundle upload (SPEC C.2.2, C.5.3)."""

    bundle_id: str
    fingerprint: str
    bundle_path: str
    manifest: dict[str, Any]
    changed: bool


_ERROR_DESCRIPTIONS = {
    400: "Invalid request",
    401: "Missing or invalid bearer token",
    403: "The read-only token (MIRROR_NEURON_API_READ_TOKEN) may only read",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict with the job's state",
    413: "Request body too large",
    415: "Unsupported content type",
    422: "Bundle folder invalid or unusable",
    500: "Internal server error",
    503: "Database unavailable",
}


def responses(
    ok: dict[int, tuple[Any, str]], errors: tuple[int, ...] = (), *, authenticated: bool = True
) -> dict[int, ResponseSpec]:
    """The documented responses of a route: its successes, its errors, and 401/500/503 for every route."""
    specs = {
        status: ResponseSpec(data_container=shape, description=text, generate_examples=False)
        for status, (shape, text) in ok.items()
    }
    common = (401, 500, 503) if authenticated else (500,)
    for status in sorted({*errors, *common} - set(specs)):
        shape: Any = ValidationErrorBody if status == 422 else ErrorBody
        specs[status] = ResponseSpec(
            data_container=shape, description=_ERROR_DESCRIPTIONS[status], generate_examples=False
        )
    return specs


# ------------------------------------------------------------------ request bodies and parameters
#
# The two routes that read a body parse it themselves (SPEC §2.1 orders the size, content-type and
# JSON checks before anything else), so Litestar cannot infer their request bodies; these schemas
# document them. They are never stricter than the validation the routes apply: every body the API
# accepts satisfies them (manifest rules that span several fields, such as edges naming existing
# nodes, are left to the 400 answer).

_STRING = Schema(type=OpenAPIType.STRING)
_OBJECT_OR_NULL = Schema(type=[OpenAPIType.OBJECT, OpenAPIType.NULL])
_ENCODING = Schema(enum=[*CONTENT_ENCODINGS, None])

GRAPH_NODE_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=["node_id", "agent_type"],
    properties={
        "node_id": Schema(type=OpenAPIType.STRING, min_length=1, max_length=MAX_ID_LENGTH),
        "agent_type": Schema(enum=[*AGENT_TYPES, *AGENT_TYPE_ALIASES]),
        "config": _OBJECT_OR_NULL,
    },
)

EDGE_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=["from_node", "to_node", "message_type"],
    properties={"message_type": Schema(type=OpenAPIType.STRING, min_length=1)},
)

MANIFEST_SCHEMA = Schema(
    title="Manifest",
    description="A raw manifest (SPEC §5); unknown keys are ignored.",
    type=OpenAPIType.OBJECT,
    required=["manifest_version", "graph_id", "nodes"],
    properties={
        "manifest_version": Schema(schema_not=Schema(type=OpenAPIType.NULL)),
        "graph_id": Schema(type=OpenAPIType.STRING, pattern=r"^[A-Za-z0-9_.\-]{1,128}$"),
        "job_name": Schema(type=[OpenAPIType.STRING, OpenAPIType.NULL]),
        "daemon": Schema(type=OpenAPIType.BOOLEAN),
        "nodes": Schema(type=OpenAPIType.ARRAY, min_items=1, max_items=MAX_NODES, items=GRAPH_NODE_SCHEMA),
        "edges": Schema(type=[OpenAPIType.ARRAY, OpenAPIType.NULL], max_items=MAX_EDGES, items=EDGE_SCHEMA),
        "initial_inputs": Schema(type=[OpenAPIType.OBJECT, OpenAPIType.ARRAY, OpenAPIType.NULL]),
        "policies": Schema(
            type=[OpenAPIType.OBJECT, OpenAPIType.NULL],
            properties={
                "recovery_mode": Schema(enum=[*RECOVERY_MODES, None]),
                "max_agent_restart_attempts": Schema(type=[OpenAPIType.INTEGER, OpenAPIType.NULL], minimum=0),
            },
        ),
    },
    # A body with `bundle_id` or `_bundle_path` is a bundle submission (SPEC §2.7 step 3, C.5.4).
    schema_not=Schema(any_of=[Schema(required=["bundle_id"]), Schema(required=["_bundle_path"])]),
)

BUNDLE_SUBMISSION_SCHEMA = Schema(
    title="BundleSubmission",
    description="Submit the current version of a registered bundle (SPEC §2.7 (b)).",
    type=OpenAPIType.OBJECT,
    required=["bundle_id"],
    properties={
        "bundle_id": Schema(type=OpenAPIType.STRING, min_length=1),
        "initial_inputs": Schema(type=[OpenAPIType.OBJECT, OpenAPIType.ARRAY, OpenAPIType.NULL]),
    },
    additional_properties=False,
)

UPLOADED_SUBMISSION_SCHEMA = Schema(
    title="UploadedBundleSubmission",
    description="Submit the version an upload returned as `bundle_path` (SPEC C.2.4, C.5.4).",
    type=OpenAPIType.OBJECT,
    required=["_bundle_path"],
    properties={
        "_bundle_path": Schema(type=OpenAPIType.STRING, pattern=r"^upload:[A-Za-z0-9_.-]{1,128}@[0-9a-f]{64}$"),
        "initial_inputs": Schema(type=[OpenAPIType.OBJECT, OpenAPIType.ARRAY, OpenAPIType.NULL]),
    },
    additional_properties=False,
)

SUBMISSION_SCHEMA = Schema(one_of=[MANIFEST_SCHEMA, BUNDLE_SUBMISSION_SCHEMA, UPLOADED_SUBMISSION_SCHEMA])

BUNDLE_UPLOAD_SCHEMA = Schema(
    title="BundleUpload",
    description="A zip archive holding a bundle at its root or in its one top-level directory (SPEC C.2.1).",
    type=OpenAPIType.OBJECT,
    required=["bundle"],
    properties={"bundle": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)},
)

EXTERNAL_MESSAGE_SCHEMA = Schema(
    title="ExternalMessage",
    description="An external message for one agent (SPEC §2.13); an empty body counts as {}.",
    type=OpenAPIType.OBJECT,
    required=["agent_id"],
    properties={
        "agent_id": Schema(type=OpenAPIType.STRING, min_length=1),
        "message": Schema(
            type=OpenAPIType.OBJECT,
            description="Spec form (with `envelope`) or legacy form (SPEC §6.2).",
            # The encoding is read from the envelope in spec form, from the top level otherwise.
            schema_if=Schema(required=["envelope"]),
            then=Schema(properties={"envelope": Schema(properties={"content_encoding": _ENCODING})}),
            schema_else=Schema(properties={"content_encoding": _ENCODING}),
        ),
    },
)

# Query and header rules of params.py, as patterns (Appendix B.10: ASCII digits only).
DIGITS_PATTERN = r"^[0-9]+$"
LIMIT_PATTERN = r"^0*([1-9][0-9]{0,2}|1000)$"
_STATUS = "(" + "|".join(ALL_STATUSES) + ")"
STATUS_PATTERN = f"^{_STATUS}(,{_STATUS})*$"
STATUS_LIST: dict[str, Any] = {
    "one_of": None,
    "type": OpenAPIType.ARRAY,
    "items": Schema(type=OpenAPIType.STRING, pattern=STATUS_PATTERN),
}
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"


def text_parameter(pattern: str | None = None) -> dict[str, Any]:
    """`schema_extra` documenting an optional text parameter (no null: a parameter is absent or text)."""
    extra: dict[str, Any] = {"one_of": None, "type": OpenAPIType.STRING}
    if pattern is not None:
        extra["pattern"] = pattern
    return extra


STREAM_MEDIA_TYPES = ("application/x-ndjson", "text/event-stream")


def operation_class(
    *,
    body: Schema | None = None,
    required: bool = False,
    streams: bool = False,
    body_media_type: str = "application/json",
) -> type[Operation]:
    """An Operation that also documents a body the handler reads itself, and NDJSON/SSE answers of its 200."""

    @dataclass
    class Documented(Operation):
        def __post_init__(self) -> None:
            if body is not None:
                content = {body_media_type: OpenAPIMediaType(schema=body)}
                self.request_body = RequestBody(content=content, required=required)
            ok = (self.responses or {}).get("200")
            if streams and isinstance(ok, OpenAPIResponse) and ok.content is not None:
                for media_type in STREAM_MEDIA_TYPES:
                    ok.content[media_type] = OpenAPIMediaType(schema=_STRING)

    return Documented


# ------------------------------------------------------------------ authentication

BEARER_SCHEME = "bearer"
BEARER: list[SecurityRequirement] = [{BEARER_SCHEME: []}]
NO_AUTHENTICATION: list[SecurityRequirement] = [{}]


def security_components(token_required: bool) -> tuple[Components, list[SecurityRequirement] | None]:
    """The bearer scheme and, when a token is configured, the document-wide requirement (SPEC §2.1)."""
    scheme = SecurityScheme(type="http", scheme="bearer", description="MIRROR_NEURON_API_TOKEN")
    components = Components(security_schemes={BEARER_SCHEME: scheme})
    return components, (BEARER if token_required else None)
