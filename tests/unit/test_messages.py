"""Message normalisation, body encoding and outgoing construction (SPEC §6, §4.3)."""

from __future__ import annotations

import base64
import gzip
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.messages import (
    UnsupportedEncoding,
    build_outgoing,
    check_content_encoding,
    encode_body,
    message_id_from_bytes,
    normalize_message,
    received_payload,
)

TS = "2024-03-28T11:00:00.000Z"


def seed(raw: Any, to: str | None = "entry") -> dict[str, Any]:
    """Normalise like a bootstrap seed (§3.7)."""
    return normalize_message(
        raw,
        message_id="MSGID000000000",
        job_id="g-1711623600000-1c50c86dc919",
        to=to,
        timestamp=TS,
        correlation_id="corr-new",
        default_from="runtime",
        default_type="init",
        default_class="command",
    )


def envelope(**overrides: Any) -> dict[str, Any]:
    """The default seed envelope with some fields replaced."""
    base = {
        "spec_version": "mn-msg/1",
        "message_id": "MSGID000000000",
        "job_id": "g-1711623600000-1c50c86dc919",
        "from": "runtime",
        "to": "entry",
        "type": "init",
        "class": "command",
        "timestamp": TS,
        "correlation_id": "corr-new",
        "attempt": 1,
        "priority": 100,
        "content_type": "application/json",
        "content_encoding": "identity",
    }
    return {**base, **overrides}


# ---------------------------------------------------------------------------------------------
# §6.2 input forms
# ---------------------------------------------------------------------------------------------


def test_seeding_plain_object_gives_the_whole_object_as_body() -> None:
    assert seed({"topic": "x", "text": "y"}) == {
        "envelope": envelope(),
        "headers": {},
        "body": {"topic": "x", "text": "y"},
        "artifacts": [],
        "stream": None,
    }


def test_seeding_type_key_sets_the_type_and_leaves_the_rest_as_body() -> None:
    message = seed({"type": "foo", "x": 1})
    assert message["envelope"] == envelope(type="foo")
    assert message["body"] == {"x": 1}


def test_empty_seed_has_empty_object_body() -> None:
    assert seed({})["body"] == {}


LEGACY_BODIES = [
    ("body key wins", {"body": [1, 2], "payload": {"p": 1}, "x": 1}, [1, 2]),
    ("body null is a body", {"body": None, "payload": {"p": 1}}, None),
    ("payload when no body", {"payload": {"p": 1}, "x": 1}, {"p": 1}),
    ("payload string", {"payload": "text"}, "text"),
    (
        "envelope and structural keys removed",
        {
            "message_id": "m",
            "job_id": "j",
            "from": "f",
            "to": "t",
            "type": "ty",
            "class": "c",
            "timestamp": "ts",
            "correlation_id": "co",
            "causation_id": "ca",
            "attempt": 2,
            "priority": 3,
            "ttl_ms": 4,
            "content_type": "text/plain",
            "content_encoding": "gzip",
            "headers": {"h": 1},
            "artifacts": [1],
            "stream": {"stream_id": "s"},
            "keep": True,
        },
        {"keep": True},
    ),
]


@pytest.mark.parametrize(
    ("raw", "body"), [case[1:] for case in LEGACY_BODIES], ids=[c[0] for c in LEGACY_BODIES]
)
def test_legacy_body(raw: dict[str, Any], body: Any) -> None:
    assert seed(raw)["body"] == body


def test_legacy_envelope_fields_are_kept_except_ids_and_to() -> None:
    raw = {
        "message_id": "supplied",
        "job_id": "other-job",
        "from": "client",
        "to": "elsewhere",
        "type": "t",
        "class": "event",
        "timestamp": "2020-01-01T00:00:00.000Z",
        "correlation_id": "corr-old",
        "causation_id": "cause",
        "attempt": 3,
        "priority": 7,
        "ttl_ms": 1000,
        "content_type": "text/plain",
        "content_encoding": "gzip",
        "headers": {"h": "v"},
        "artifacts": [{"a": 1}],
        "stream": {"stream_id": "s", "seq": 1},
        "payload": "p",
    }
    assert seed(raw) == {
        "envelope": envelope(
            **{
                "from": "client",
                "type": "t",
                "class": "event",
                "timestamp": "2020-01-01T00:00:00.000Z",
                "correlation_id": "corr-old",
                "causation_id": "cause",
                "attempt": 3,
                "priority": 7,
                "ttl_ms": 1000,
                "content_type": "text/plain",
                "content_encoding": "gzip",
            }
        ),
        "headers": {"h": "v"},
        "body": "p",
        "artifacts": [{"a": 1}],
        "stream": {"stream_id": "s", "seq": 1},
    }


def test_null_envelope_fields_take_defaults_and_optional_ones_are_omitted() -> None:
    raw = {"from": None, "type": None, "causation_id": None, "ttl_ms": None, "content_encoding": None, "x": 1}
    message = seed(raw)
    assert message["envelope"] == envelope()
    assert "causation_id" not in message["envelope"]
    assert "ttl_ms" not in message["envelope"]


def test_to_none_keeps_the_input_to() -> None:
    assert seed({"to": "b"}, to=None)["envelope"]["to"] == "b"
    assert seed({}, to=None)["envelope"]["to"] is None


def test_spec_form_reads_envelope_and_top_level_parts() -> None:
    raw = {
        "envelope": {
            "type": "spec",
            "from": "client",
            "correlation_id": "c1",
            "causation_id": "x",
            "message_id": "no",
        },
        "type": "ignored-top-level",
        "headers": {"h": 1},
        "body": {"b": 1},
        "artifacts": ["a"],
        "stream": {"stream_id": "s", "seq": 0, "open": True},
        "extra": "ignored",
    }
    assert seed(raw) == {
        "envelope": envelope(type="spec", **{"from": "client"}, correlation_id="c1", causation_id="x"),
        "headers": {"h": 1},
        "body": {"b": 1},
        "artifacts": ["a"],
        "stream": {"stream_id": "s", "seq": 0, "open": True},
    }


def test_spec_form_without_body_has_null_body() -> None:
    assert seed({"envelope": {}, "payload": {"p": 1}})["body"] is None


def test_spec_form_with_non_object_envelope_uses_defaults() -> None:
    assert seed({"envelope": "x", "body": 1})["envelope"] == envelope()


COERCIONS: list[tuple[str, dict[str, Any], str, Any]] = [
    ("headers list", {"headers": [1]}, "headers", {}),
    ("headers null", {"headers": None}, "headers", {}),
    ("artifacts object", {"artifacts": {"a": 1}}, "artifacts", []),
    ("artifacts string", {"artifacts": "a"}, "artifacts", []),
    ("stream list", {"stream": [1]}, "stream", None),
    ("stream string", {"stream": "s"}, "stream", None),
    ("stream object", {"stream": {"eof": True}}, "stream", {"eof": True}),
]


@pytest.mark.parametrize(
    ("raw", "key", "expected"), [case[1:] for case in COERCIONS], ids=[c[0] for c in COERCIONS]
)
def test_part_coercion(raw: dict[str, Any], key: str, expected: Any) -> None:
    assert seed(raw)[key] == expected


def test_external_message_defaults() -> None:
    message = normalize_message(
        {},
        message_id="m",
        job_id="j",
        to="agent",
        timestamp=TS,
        correlation_id="c",
        default_from="external",
        default_type="command",
        default_class="command",
    )
    assert message["envelope"] == {
        "spec_version": "mn-msg/1",
        "message_id": "m",
        "job_id": "j",
        "from": "external",
        "to": "agent",
        "type": "command",
        "class": "command",
        "timestamp": TS,
        "correlation_id": "c",
        "attempt": 1,
        "priority": 100,
        "content_type": "application/json",
        "content_encoding": "identity",
    }


def test_normalised_message_does_not_alias_the_input() -> None:
    raw = {"headers": {"h": []}, "x": [1]}
    message = seed(raw)
    message["headers"]["h"].append(1)
    message["body"]["x"].append(2)
    assert raw == {"headers": {"h": []}, "x": [1]}


# ---------------------------------------------------------------------------------------------
# §6.3 body encoding
# ---------------------------------------------------------------------------------------------

B64 = {"$base64": base64.b64encode(b"\x00\xffbin").decode()}

ENCODINGS = [
    ("json object", {"a": 1, "b": [True, None]}, "application/json", b'{"a":1,"b":[true,null]}'),
    ("json keeps key order", {"b": 1, "a": 2}, "application/json", b'{"b":1,"a":2}'),
    ("json string", "hi", "application/json", b'"hi"'),
    ("json non-ascii", {"t": "é"}, "application/json", '{"t":"é"}'.encode()),
    ("text/json", [1, 2], "text/json", b"[1,2]"),
    ("json base64 object stays JSON", B64, "application/json", b'{"$base64":"AP9iaW4="}'),
    ("x-ndjson string as is", "a\nb", "application/x-ndjson", b"a\nb"),
    ("x-ndjson list", [{"a": 1}, 2, "s"], "application/x-ndjson", b'{"a":1}\n2\n"s"\n'),
    ("jsonl list", [1], "application/jsonl", b"1\n"),
    ("ndjson empty list", [], "application/ndjson", b""),
    ("ndjson other", {"a": 1}, "application/ndjson", b'{"a":1}\n'),
    ("ndjson null", None, "application/x-ndjson", b"null\n"),
    ("octet string", "héllo", "application/octet-stream", "héllo".encode()),
    ("octet base64", B64, "application/octet-stream", b"\x00\xffbin"),
    ("octet other", {"a": 1}, "application/octet-stream", b'{"a":1}'),
    ("other type string is JSON", "hi", "text/plain", b'"hi"'),
    ("other type object", {"a": 1}, "text/csv", b'{"a":1}'),
    ("other type base64", B64, "image/png", b"\x00\xffbin"),
]


@pytest.mark.parametrize(
    ("body", "content_type", "expected"), [case[1:] for case in ENCODINGS], ids=[c[0] for c in ENCODINGS]
)
def test_body_encoding(body: Any, content_type: str, expected: bytes) -> None:
    assert encode_body(body, content_type, "identity") == expected


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ({"a": [1, "é"]}, "application/json"),
        (B64, "application/octet-stream"),
        ([1, 2], "application/x-ndjson"),
    ],
)
def test_gzip_round_trip(body: Any, content_type: str) -> None:
    compressed = encode_body(body, content_type, "gzip")
    assert compressed[:2] == b"\x1f\x8b"
    assert gzip.decompress(compressed) == encode_body(body, content_type, "identity")


def test_gzip_is_deterministic_with_zero_mtime() -> None:
    first = encode_body({"a": 1}, "application/json", "gzip")
    assert first == encode_body({"a": 1}, "application/json", "gzip")
    assert first[4:8] == b"\x00\x00\x00\x00"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("br", 'unsupported content_encoding "br"'),
        ("GZIP", 'unsupported content_encoding "GZIP"'),
        ("", 'unsupported content_encoding ""'),
        (5, 'unsupported content_encoding "5"'),
    ],
)
def test_unsupported_encoding(value: Any, message: str) -> None:
    assert check_content_encoding(value) == message
    with pytest.raises(UnsupportedEncoding) as raised:
        encode_body({}, "application/json", value)
    assert str(raised.value) == message
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize("value", ["identity", "gzip"])
def test_supported_encodings(value: str) -> None:
    assert check_content_encoding(value) is None


# ---------------------------------------------------------------------------------------------
# §6.4 outgoing messages and §4.3 received payload
# ---------------------------------------------------------------------------------------------

INCOMING = {
    "envelope": {
        "spec_version": "mn-msg/1",
        "message_id": "in-1",
        "job_id": "j",
        "from": "up",
        "to": "me",
        "type": "t",
        "class": "command",
        "timestamp": TS,
        "correlation_id": "corr",
        "causation_id": "older",
        "attempt": 2,
        "priority": 5,
        "ttl_ms": 10,
        "content_type": "application/x-ndjson",
        "content_encoding": "gzip",
    },
    "headers": {"a": 1, "b": 2},
    "body": {"in": True},
    "artifacts": [{"uri": "x"}],
    "stream": {"stream_id": "s", "seq": 3},
}


def outgoing(options: dict[str, Any]) -> dict[str, Any]:
    """Build an emit from INCOMING with the given options."""
    return build_outgoing(
        INCOMING,
        message_id="out-1",
        job_id="j",
        sender="me",
        to="down",
        type_="result",
        body={"out": 1},
        timestamp="2024-03-28T11:00:01.000Z",
        options=options,
    )


def test_outgoing_inherits_from_the_incoming_message() -> None:
    assert outgoing({}) == {
        "envelope": {
            "spec_version": "mn-msg/1",
            "message_id": "out-1",
            "job_id": "j",
            "from": "me",
            "to": "down",
            "type": "result",
            "class": "command",
            "timestamp": "2024-03-28T11:00:01.000Z",
            "correlation_id": "corr",
            "causation_id": "in-1",
            "attempt": 1,
            "priority": 100,
            "content_type": "application/x-ndjson",
            "content_encoding": "gzip",
        },
        "headers": {"a": 1, "b": 2},
        "body": {"out": 1},
        "artifacts": [{"uri": "x"}],
        "stream": {"stream_id": "s", "seq": 3},
    }


def test_outgoing_options_override_and_headers_overlay() -> None:
    message = outgoing(
        {
            "class": "event",
            "correlation_id": "c2",
            "causation_id": "explicit",
            "content_type": "application/json",
            "content_encoding": "identity",
            "headers": {"b": 20, "c": 30},
            "artifacts": [],
            "stream": {"stream_id": "t"},
        }
    )
    assert message["envelope"]["class"] == "event"
    assert message["envelope"]["correlation_id"] == "c2"
    assert message["envelope"]["causation_id"] == "explicit"
    assert message["envelope"]["content_type"] == "application/json"
    assert message["envelope"]["content_encoding"] == "identity"
    assert message["headers"] == {"a": 1, "b": 20, "c": 30}
    assert message["artifacts"] == []
    assert message["stream"] == {"stream_id": "t"}


def test_outgoing_null_options_inherit() -> None:
    assert outgoing({"class": None, "stream": None, "headers": None, "artifacts": None}) == outgoing({})


def test_outgoing_from_a_bare_incoming_message_uses_defaults() -> None:
    message = build_outgoing(
        {}, message_id="o", job_id="j", sender="s", to="t", type_="x", body=None, timestamp=TS, options={}
    )
    assert message == {
        "envelope": {
            "spec_version": "mn-msg/1",
            "message_id": "o",
            "job_id": "j",
            "from": "s",
            "to": "t",
            "type": "x",
            "class": "event",
            "timestamp": TS,
            "correlation_id": None,
            "attempt": 1,
            "priority": 100,
            "content_type": "application/json",
            "content_encoding": "identity",
        },
        "headers": {},
        "body": None,
        "artifacts": [],
        "stream": None,
    }


def test_received_payload() -> None:
    assert received_payload(INCOMING) == {
        "message_id": "in-1",
        "from": "up",
        "to": "me",
        "type": "t",
        "class": "command",
        "content_type": "application/x-ndjson",
        "content_encoding": "gzip",
        "stream": {"stream_id": "s", "seq": 3},
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (bytes(range(10)), "AAECAwQFBgcICQ"),
        (b"\xff" * 10, "_____________w"),
        (b"\xfb\xef" * 5, "--_77_vv--_77w"),
    ],
)
def test_message_id_from_bytes(raw: bytes, expected: str) -> None:
    assert message_id_from_bytes(raw) == expected
    assert len(expected) == 14


@pytest.mark.parametrize("raw", [b"", b"\x00" * 9, b"\x00" * 11])
def test_message_id_needs_ten_bytes(raw: bytes) -> None:
    with pytest.raises(ValueError):
        message_id_from_bytes(raw)


MESSAGE_KEYS = [
    "envelope",
    "body",
    "payload",
    "headers",
    "artifacts",
    "stream",
    "type",
    "from",
    "to",
    "$base64",
    "x",
]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(MESSAGE_KEYS), children, max_size=4)
    ),
    max_leaves=15,
)
CONTENT_TYPES = st.sampled_from(
    ["application/json", "application/x-ndjson", "application/octet-stream", "text/plain", 5]
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES, CONTENT_TYPES, st.sampled_from(["identity", "gzip"]))
def test_any_input_normalises_and_encodes(raw: Any, content_type: Any, encoding: str) -> None:
    message = seed(raw)
    assert message["envelope"]["message_id"] == "MSGID000000000"
    assert gzip.decompress(encode_body(message["body"], content_type, "gzip")) == encode_body(
        message["body"], content_type, "identity"
    )
    assert isinstance(encode_body(message["body"], content_type, encoding), bytes)
    reply = build_outgoing(
        message, message_id="o", job_id="j", sender="s", to="t", type_="x", body=raw, timestamp=TS, options={}
    )
    assert reply["envelope"]["causation_id"] == "MSGID000000000"
