"""Message normalisation, body encoding and outgoing construction (SPEC §6).

Pure: standard library only. Message ids, job ids, timestamps and correlation ids are passed in.
"""

from __future__ import annotations

import base64
import binascii
import copy
import gzip
import json
from typing import Any, Final

SPEC_VERSION: Final = "mn-msg/1"
DEFAULT_CLASS: Final = "event"
DEFAULT_ATTEMPT: Final = 1
DEFAULT_PRIORITY: Final = 100
DEFAULT_CONTENT_TYPE: Final = "application/json"
DEFAULT_CONTENT_ENCODING: Final = "identity"
CONTENT_ENCODINGS: Final = ("identity", "gzip")
MESSAGE_ID_BYTES: Final = 10

JSON_TYPES: Final = frozenset({"application/json", "text/json"})
NDJSON_TYPES: Final = frozenset({"application/x-ndjson", "application/jsonl", "application/ndjson"})
OCTET_STREAM: Final = "application/octet-stream"
BASE64_KEY: Final = "$base64"

# Envelope keys read from the top level of a legacy-form message (§6.2), in envelope order.
LEGACY_ENVELOPE_KEYS: Final = (
    "message_id",
    "job_id",
    "from",
    "to",
    "type",
    "class",
    "timestamp",
    "correlation_id",
    "causation_id",
    "attempt",
    "priority",
    "ttl_ms",
    "content_type",
    "content_encoding",
)
# Keys that are never part of a legacy message's implicit body.
NON_BODY_KEYS: Final = frozenset(
    {*LEGACY_ENVELOPE_KEYS, "headers", "artifacts", "stream", "payload", "body", "envelope"}
)
# Envelope keys that are dropped when null (§6.1).
OMITTED_WHEN_NULL: Final = ("causation_id", "ttl_ms")


class UnsupportedEncoding(ValueError):
    """Raised for a content_encoding other than identity or gzip; str() is the §6.3 message."""

    def __init__(self, value: Any) -> None:
        self.value = value
        super().__init__(encoding_error(value))


# --------------------------------------------------------------------------------------------
# Value helpers
# --------------------------------------------------------------------------------------------


_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # built once (see canonical_json)


def _json_text(value: Any) -> str:
    """Return compact JSON text of a value (non-ASCII kept, key order kept)."""
    return _COMPACT.encode(value)


def _render(value: Any) -> str:
    """Return a string as is and any other value as compact JSON."""
    return value if isinstance(value, str) else _json_text(value)


def _given(value: Any, default: Any) -> Any:
    """Return a copy of a value when it is not null, else the default."""
    return default if value is None else copy.deepcopy(value)


def coerce_headers(value: Any) -> dict[str, Any]:
    """Return the value when it is an object, else {}."""
    return copy.deepcopy(value) if isinstance(value, dict) else {}


def coerce_artifacts(value: Any) -> list[Any]:
    """Return the value when it is a list, else []."""
    return copy.deepcopy(value) if isinstance(value, list) else []


def coerce_stream(value: Any) -> dict[str, Any] | None:
    """Return the value when it is an object, else null."""
    return copy.deepcopy(value) if isinstance(value, dict) else None


def message_id_from_bytes(b: bytes) -> str:
    """Return the 14-character unpadded base64url message id of 10 random bytes."""
    if len(b) != MESSAGE_ID_BYTES:
        raise ValueError(f"a message id needs exactly {MESSAGE_ID_BYTES} bytes, got {len(b)}")
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


# --------------------------------------------------------------------------------------------
# Normalisation (§6.1, §6.2)
# --------------------------------------------------------------------------------------------


def _envelope(
    fields: dict[str, Any],
    *,
    message_id: str,
    job_id: str,
    to: str | None,
    timestamp: str,
    correlation_id: str,
    default_from: str,
    default_type: str,
    default_class: str,
) -> dict[str, Any]:
    """Return a §6.1 envelope: given fields kept, gaps filled, message_id/job_id/to imposed."""
    envelope = {
        "spec_version": SPEC_VERSION,
        "message_id": message_id,
        "job_id": job_id,
        "from": _given(fields.get("from"), default_from),
        "to": to if to is not None else copy.deepcopy(fields.get("to")),
        "type": _given(fields.get("type"), default_type),
        "class": _given(fields.get("class"), default_class),
        "timestamp": _given(fields.get("timestamp"), timestamp),
        "correlation_id": _given(fields.get("correlation_id"), correlation_id),
        "causation_id": copy.deepcopy(fields.get("causation_id")),
        "attempt": _given(fields.get("attempt"), DEFAULT_ATTEMPT),
        "priority": _given(fields.get("priority"), DEFAULT_PRIORITY),
        "ttl_ms": copy.deepcopy(fields.get("ttl_ms")),
        "content_type": _given(fields.get("content_type"), DEFAULT_CONTENT_TYPE),
        "content_encoding": _given(fields.get("content_encoding"), DEFAULT_CONTENT_ENCODING),
    }
    return _drop_null_optionals(envelope)


def _drop_null_optionals(envelope: dict[str, Any]) -> dict[str, Any]:
    """Return the envelope without causation_id and ttl_ms when they are null."""
    return {key: value for key, value in envelope.items() if not (key in OMITTED_WHEN_NULL and value is None)}


def legacy_body(raw: dict[str, Any]) -> Any:
    """Return a legacy message's body: ``body``, else ``payload``, else the non-envelope keys."""
    if "body" in raw:
        return copy.deepcopy(raw["body"])
    if "payload" in raw:
        return copy.deepcopy(raw["payload"])
    return {key: copy.deepcopy(value) for key, value in raw.items() if key not in NON_BODY_KEYS}


def _split_input(raw: Any) -> tuple[dict[str, Any], Any]:
    """Return (envelope fields, body) of a spec-form or legacy-form input (§6.2)."""
    if not isinstance(raw, dict):
        return {}, copy.deepcopy(raw)
    if "envelope" in raw:
        fields = raw["envelope"] if isinstance(raw["envelope"], dict) else {}
        return fields, copy.deepcopy(raw.get("body"))
    return {key: raw[key] for key in LEGACY_ENVELOPE_KEYS if key in raw}, legacy_body(raw)


def normalize_message(
    raw: Any,
    *,
    message_id: str,
    job_id: str,
    to: str | None,
    timestamp: str,
    correlation_id: str,
    default_from: str,
    default_type: str,
    default_class: str,
) -> dict[str, Any]:
    """Return the §6.1 normalised message of a spec-form or legacy-form input."""
    fields, body = _split_input(raw)
    top = raw if isinstance(raw, dict) else {}
    envelope = _envelope(
        fields,
        message_id=message_id,
        job_id=job_id,
        to=to,
        timestamp=timestamp,
        correlation_id=correlation_id,
        default_from=default_from,
        default_type=default_type,
        default_class=default_class,
    )
    return {
        "envelope": envelope,
        "headers": coerce_headers(top.get("headers")),
        "body": body,
        "artifacts": coerce_artifacts(top.get("artifacts")),
        "stream": coerce_stream(top.get("stream")),
    }


# --------------------------------------------------------------------------------------------
# Body encoding (§6.3)
# --------------------------------------------------------------------------------------------


def encoding_error(value: Any) -> str:
    """Return the §6.3 / Appendix A message for an unsupported content_encoding."""
    return f'unsupported content_encoding "{_render(value)}"'


def check_content_encoding(value: Any) -> str | None:
    """Return the unsupported-encoding message for a value other than identity/gzip, else None."""
    return None if isinstance(value, str) and value in CONTENT_ENCODINGS else encoding_error(value)


def _media_type(content_type: Any) -> str:
    """Return the lower-cased media type of a content type, parameters removed."""
    return content_type.split(";", 1)[0].strip().lower() if isinstance(content_type, str) else ""


def base64_body_bytes(body: Any) -> bytes | None:
    """Return the decoded bytes of a ``{"$base64": "<standard base64>"}`` body, else None."""
    if not (isinstance(body, dict) and len(body) == 1 and isinstance(body.get(BASE64_KEY), str)):
        return None
    try:
        return base64.b64decode(body[BASE64_KEY], validate=True)
    except (binascii.Error, ValueError):
        return None


def _json_bytes(body: Any) -> bytes:
    """Return the UTF-8 JSON text of a body."""
    return _json_text(body).encode("utf-8")


def _ndjson_bytes(body: Any) -> bytes:
    """Return NDJSON bytes: strings as is, lists one line per item, other values one line."""
    if isinstance(body, str):
        return body.encode("utf-8")
    items = body if isinstance(body, list) else [body]
    return b"".join(_json_bytes(item) + b"\n" for item in items)


def _octet_stream_bytes(body: Any) -> bytes:
    """Return raw bytes: a string's UTF-8, a base64 body decoded, other values as JSON text."""
    if isinstance(body, str):
        return body.encode("utf-8")
    return _other_bytes(body)


def _other_bytes(body: Any) -> bytes:
    """Return the decoded bytes of a base64 body, else the JSON text."""
    decoded = base64_body_bytes(body)
    return decoded if decoded is not None else _json_bytes(body)


def body_bytes(body: Any, content_type: Any) -> bytes:
    """Return the body encoded for its content type (§6.3 table), before content encoding."""
    media_type = _media_type(content_type)
    if media_type in JSON_TYPES:
        return _json_bytes(body)
    if media_type in NDJSON_TYPES:
        return _ndjson_bytes(body)
    if media_type == OCTET_STREAM:
        return _octet_stream_bytes(body)
    return _other_bytes(body)


def apply_content_encoding(data: bytes, content_encoding: Any) -> bytes:
    """Return the bytes with identity or gzip (mtime 0) applied; raise UnsupportedEncoding otherwise."""
    if content_encoding == "identity":
        return data
    if content_encoding == "gzip":
        return gzip.compress(data, mtime=0)
    raise UnsupportedEncoding(content_encoding)


def encode_body(body: Any, content_type: Any, content_encoding: Any) -> bytes:
    """Return the bytes given to executors for a body (§6.3); raise UnsupportedEncoding if needed."""
    return apply_content_encoding(body_bytes(body, content_type), content_encoding)


# --------------------------------------------------------------------------------------------
# Emitting (§6.4) and events (§4.3)
# --------------------------------------------------------------------------------------------


def _envelope_of(message: dict[str, Any]) -> dict[str, Any]:
    """Return a message's envelope, or {} when it has none."""
    envelope = message.get("envelope")
    return envelope if isinstance(envelope, dict) else {}


def _option(options: dict[str, Any], incoming: dict[str, Any], key: str) -> Any:
    """Return the option's value when set (not null), else a copy of the incoming value."""
    value = options.get(key)
    return copy.deepcopy(value if value is not None else incoming.get(key))


def _overlaid_headers(incoming: Any, overrides: Any) -> dict[str, Any]:
    """Return the incoming headers overlaid with the override headers."""
    return {**coerce_headers(incoming), **coerce_headers(overrides)}


def build_outgoing(
    incoming: dict[str, Any],
    *,
    message_id: str,
    job_id: str,
    sender: str,
    to: str,
    type_: str,
    body: Any,
    timestamp: str,
    options: dict[str, Any],
) -> dict[str, Any]:
    """Return the normalised message an agent emits in reply to an incoming message (§6.4)."""
    inherited = _envelope_of(incoming)
    envelope = {
        "spec_version": SPEC_VERSION,
        "message_id": message_id,
        "job_id": job_id,
        "from": sender,
        "to": to,
        "type": type_,
        "class": _given(_option(options, inherited, "class"), DEFAULT_CLASS),
        "timestamp": timestamp,
        "correlation_id": _option(options, inherited, "correlation_id"),
        "causation_id": _given(options.get("causation_id"), inherited.get("message_id")),
        "attempt": DEFAULT_ATTEMPT,
        "priority": DEFAULT_PRIORITY,
        "content_type": _given(_option(options, inherited, "content_type"), DEFAULT_CONTENT_TYPE),
        "content_encoding": _given(_option(options, inherited, "content_encoding"), DEFAULT_CONTENT_ENCODING),
    }
    return {
        "envelope": _drop_null_optionals(envelope),
        "headers": _overlaid_headers(incoming.get("headers"), options.get("headers")),
        "body": copy.deepcopy(body),
        "artifacts": coerce_artifacts(_option(options, incoming, "artifacts")),
        "stream": coerce_stream(_option(options, incoming, "stream")),
    }


def received_payload(message: dict[str, Any]) -> dict[str, Any]:
    """Return the ``agent_message_received`` payload of a normalised message (§4.3)."""
    envelope = _envelope_of(message)
    return {
        "message_id": envelope.get("message_id"),
        "from": envelope.get("from"),
        "to": envelope.get("to"),
        "type": envelope.get("type"),
        "class": envelope.get("class"),
        "content_type": envelope.get("content_type"),
        "content_encoding": envelope.get("content_encoding"),
        "stream": copy.deepcopy(message.get("stream")),
    }
