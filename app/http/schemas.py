"""The OpenAPI document's responses, request bodies and parameters; the answer shapes are `app.wire`'s.

Two descriptions of one answer, on purpose. The routes answer with the plain dicts that
`app/store/read_model.py` builds from rows (and `event_store.api_record` for events, whose payload
goes out as its stored JSON text, `msgspec.Raw`, never decoded and encoded again: that was most of
a large event page's time). Returning Structs would add a conversion per row for the same bytes.
The msgspec Structs of `app/wire.py` are the document: this module hands them to Litestar for the
OpenAPI schema, and the Python client decodes answers with them. `tests/api/test_wire_shapes.py`
keeps the two equal: one scenario per database reaches every documented answer, and every key
must be a Struct field of the right type and every Struct field must appear, so a field added on
one side only fails the suite. Change both sides together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
    SecurityRequirement,
    SecurityScheme,
)

from app.domain import manifest_schema
from app.domain.events import ALL_STATUSES
from app.domain.manifest_schema import REF
from app.domain.messages import CONTENT_ENCODINGS
from app.wire import ErrorBody, InvalidRequest, ValidationErrorBody

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
        shape: Any = {422: ValidationErrorBody, 400: InvalidRequest}.get(status, ErrorBody)
        specs[status] = ResponseSpec(
            data_container=shape, description=_ERROR_DESCRIPTIONS[status], generate_examples=False
        )
    return specs


# ------------------------------------------------------------------ request bodies and parameters
#
# The two routes that read a body parse it themselves (SPEC §2.1 orders the size, content-type and
# JSON checks before anything else), so Litestar cannot infer their request bodies; these schemas
# document them as named components. The submission's come from `app.domain.manifest_schema`, written
# beside the validator; the message's is exact (schemathesis checks that every body it describes is
# accepted and every other refused).

_STRING = Schema(type=OpenAPIType.STRING)
_ENCODING = Schema(enum=[*CONTENT_ENCODINGS, None])


def component(name: str) -> Reference:
    """A reference to one of the document's named schemas."""
    return Reference(ref=REF + name)

BUNDLE_UPLOAD_SCHEMA = Schema(
    title="BundleUpload",
    description="A zip archive holding a bundle at its root or in its one top-level directory (SPEC C.2.1).",
    type=OpenAPIType.OBJECT,
    required=["bundle"],
    properties={"bundle": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)},
)

EXTERNAL_MESSAGE = Schema(
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

REQUEST_SCHEMAS: dict[str, Any] = {**manifest_schema.SCHEMAS, "ExternalMessage": EXTERNAL_MESSAGE}
# Raw JSON Schema dicts pass through Litestar's serialiser as they are (Schema objects are converted).
SUBMISSION_SCHEMA: Any = manifest_schema.SUBMISSION
EXTERNAL_MESSAGE_SCHEMA = component("ExternalMessage")


def document_request_bodies(document: OpenAPI) -> None:
    """Add the request-body schemas to the document's components (Litestar fills them with its own)."""
    schemas = document.components.schemas if document.components is not None else None
    if schemas is not None:
        schemas.update(REQUEST_SCHEMAS)


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
    body: Schema | Reference | None = None,
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
