"""The OpenAPI document's responses, request bodies and parameters; the answer shapes are `app.wire`'s."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
from app.wire import ErrorBody, ValidationErrorBody

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
