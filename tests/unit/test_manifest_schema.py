"""The manifest JSON Schema of the OpenAPI document and the validator of SPEC §5.6 held together.

Every manifest the validator accepts satisfies the schema (so no generated client is kept from sending
a valid body, and schemathesis never finds a schema-invalid body that the API accepts), and the schema
is not vacuous: single-field errors of §5.6 are refused by it as well.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.manifest import UploadCheck, validate_manifest
from app.domain.manifest_schema import SCHEMAS, SUBMISSION

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_FILES = sorted([*EXAMPLES.glob("*/manifest.json"), *EXAMPLES.glob("manifests/*.json")])
DOCUMENT = {"components": {"schemas": SCHEMAS}}


def schema_for(name: str) -> jsonschema.protocols.Validator:
    root = {**DOCUMENT, "$ref": f"#/components/schemas/{name}"}
    return jsonschema.Draft202012Validator(root)


MANIFEST = schema_for("Manifest")
SUBMIT = jsonschema.Draft202012Validator({**DOCUMENT, **SUBMISSION})


def accepted(raw: dict[str, Any]) -> bool:
    """What the validator says of a manifest, uploads resolving inside payloads/ (the widest case)."""
    return validate_manifest(
        raw, has_bundle=True, resolve_upload=lambda source: UploadCheck(True, "/bundle/payloads/" + source, True)
    ) == []


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_every_example_manifest_satisfies_the_schema(path: Path) -> None:
    manifest = json.loads(path.read_text())
    assert accepted(manifest)
    MANIFEST.validate(manifest)
    SUBMIT.validate(manifest)  # exactly one alternative of the request body


def test_bundle_submissions_are_their_own_alternative() -> None:
    SUBMIT.validate({"bundle_id": "prime_sweep_4_workers"})
    SUBMIT.validate({"bundle_id": "x", "initial_inputs": [{"n": 1}]})
    SUBMIT.validate({"_bundle_path": "upload:x@" + "0" * 64, "initial_inputs": {"root": {}}})
    for body in ({"bundle_id": ""}, {"bundle_id": "x", "extra": 1}, {"_bundle_path": "/tmp/x"},
                 {**json.loads(EXAMPLE_FILES[0].read_text()), "bundle_id": "x"}):
        assert not SUBMIT.is_valid(body), body


SINGLE_FIELD_ERRORS = [
    ("graph_id", "bad id"),
    ("manifest_version", None),
    ("job_name", 5),
    ("nodes", {}),
    ("nodes", []),
    ("edges", {}),
    ("daemon", "yes"),
    ("policies", []),
    ("initial_inputs", "text"),
]


@pytest.mark.parametrize(("key", "value"), SINGLE_FIELD_ERRORS)
def test_the_schema_refuses_what_the_validator_refuses_field_by_field(key: str, value: Any) -> None:
    manifest = json.loads((EXAMPLES / "manifests" / "research_flow.json").read_text())
    manifest[key] = value
    assert not accepted(manifest)
    assert not MANIFEST.is_valid(manifest)


_scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    ["", "root", "generic", "map", "reduce", "accumulator", "executor", "relay", "local_restart", "x y", "a" * 129]
)
_values = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "command", "x"]), inner, max_size=2),
    max_leaves=6,
)
_TOP = ["manifest_version", "graph_id", "job_name", "daemon", "long_lived", "metadata", "edges", "entrypoints",
        "initial_inputs", "policies", "reload", "nodes", "unknown"]
_NODE = ["node_id", "agent_type", "type", "role", "config", "tool_bindings", "retry_policy", "other"]
_EDGE = ["edge_id", "from_node", "to_node", "message_type", "routing_mode", "conditions"]
_POLICY = ["recovery_mode", "max_agent_restart_attempts", "placement_policy"]


@st.composite
def _mutated(draw: st.DrawFn) -> dict[str, Any]:
    """An example manifest with a few fields (top level, a node's, an edge's, a policy) replaced or removed."""
    manifest = copy.deepcopy(json.loads(draw(st.sampled_from(EXAMPLE_FILES)).read_text()))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["top", "node", "edge", "policy"]))
        value = draw(_values)
        remove = draw(st.booleans()) and draw(st.booleans())
        if where == "top":
            target, key = manifest, draw(st.sampled_from(_TOP))
        elif where == "node" and isinstance(manifest.get("nodes"), list) and manifest["nodes"]:
            target, key = draw(st.sampled_from(manifest["nodes"])), draw(st.sampled_from(_NODE))
        elif where == "edge" and isinstance(manifest.get("edges"), list) and manifest["edges"]:
            target, key = draw(st.sampled_from(manifest["edges"])), draw(st.sampled_from(_EDGE))
        else:
            manifest["policies"] = manifest.get("policies") if isinstance(manifest.get("policies"), dict) else {}
            target, key = manifest["policies"], draw(st.sampled_from(_POLICY))
        if not isinstance(target, dict):
            continue
        if remove:
            target.pop(key, None)
        else:
            target[key] = value
    return manifest


@settings(max_examples=400, deadline=None, derandomize=True)
@given(_mutated())
def test_whatever_the_validator_accepts_the_schema_accepts(manifest: dict[str, Any]) -> None:
    if accepted(manifest):
        errors = [error.message for error in MANIFEST.iter_errors(manifest)]
        assert errors == [], (errors, manifest)
