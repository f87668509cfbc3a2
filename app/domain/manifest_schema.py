"""The JSON Schema (2020-12) of a submitted manifest and of a bundle submission (SPEC §2.7, §5, C.2.4).

Written beside the validator and from its constants so that the two cannot drift apart unnoticed. The
schema types each field exactly as §5.6 checks it and no narrower: a field the validator ignores or
coerces (a node's `role`, a non-string template, an edge's `edge_id`) accepts any value here too, so
every manifest the validator accepts satisfies the schema (tests hold them together). Rules that span
several fields — edges naming existing nodes, the template matrix, entrypoints — are left to the 400
answer. Pure data, standard library only.
"""

from __future__ import annotations

from typing import Any, Final

from app.domain.manifest import (
    AGENT_TYPE_ALIASES,
    AGENT_TYPES,
    MAX_EDGES,
    MAX_ID_LENGTH,
    MAX_NODES,
    RECOVERY_MODES,
    TEMPLATE_ALIASES,
    TEMPLATES,
)

REF: Final = "#/components/schemas/"
ANY: Final[dict[str, Any]] = {}
NOT_NULL: Final[dict[str, Any]] = {"type": ["string", "number", "boolean", "object", "array"], "items": {}}
GRAPH_ID_PATTERN: Final = r"^[A-Za-z0-9_.\-]{1,128}$"
# Initial inputs: an object {<node_id>: payload or list of payloads}, or a bare list of payloads (§5.1).
INITIAL_INPUTS: Final[dict[str, Any]] = {
    "anyOf": [
        {"type": "object", "additionalProperties": ANY},
        {"type": "array", "items": {"type": "object"}},
        {"type": "null"},
    ],
    "description": "Seeds per entrypoint ({node_id: payload or [payloads]}) or one list for every entrypoint; "
    "the payloads used for seeding must be objects.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


GRAPH_NODE: Final[dict[str, Any]] = {
    "title": "GraphNode",
    "description": "A graph node (SPEC §5.2). Executor `config`: `command` (string or list of strings), "
    "`timeout_seconds` (> 0), uploads (bundle jobs only), `pool`, `slots`, ... (§7.5.1).",
    "type": "object",
    "required": ["node_id", "agent_type"],
    "properties": {
        "node_id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
        "agent_type": {"type": "string", "enum": [*AGENT_TYPES, *AGENT_TYPE_ALIASES]},
        "type": {
            "description": "Template (§5.4): " + ", ".join((*TEMPLATES, *TEMPLATE_ALIASES))
            + "; null, \"\" or a non-string means generic.",
            "anyOf": [
                {"type": "string", "enum": [*TEMPLATES, *TEMPLATE_ALIASES, ""]},
                {"type": ["null", "boolean", "number", "object", "array"], "items": {}},
            ],
        },
        "role": {"description": "Free text; root or root_coordinator make the node an entrypoint."},
        "config": {"type": ["object", "null"], "additionalProperties": ANY},
        "tool_bindings": {"description": "Stored as given (default [])."},
        "retry_policy": {"description": "Stored as given (default {})."},
        "checkpoint_policy": {"description": "Stored as given (default {})."},
        "spawn_policy": {"description": "Stored as given (default {})."},
    },
}

EDGE: Final[dict[str, Any]] = {
    "title": "Edge",
    "description": "An edge (SPEC §5.3): from_node and to_node must name graph nodes; message_type \"*\" "
    "matches every type.",
    "type": "object",
    "required": ["from_node", "to_node", "message_type"],
    "properties": {
        "edge_id": {"description": "Optional label, shown as `unknown` in messages when absent."},
        "from_node": {"type": "string"},
        "to_node": {"type": "string"},
        "message_type": {"type": "string", "minLength": 1},
        "routing_mode": {"description": "Recorded (default broadcast)."},
        "conditions": {"description": "Recorded (default {})."},
    },
}

POLICIES: Final[dict[str, Any]] = {
    "title": "Policies",
    "description": "Job policies (SPEC §5.1); other keys are kept.",
    "type": "object",
    "additionalProperties": ANY,
    "properties": {
        "placement_policy": {"description": "Recorded (default local)."},
        "recovery_mode": {"anyOf": [{"type": "string", "enum": list(RECOVERY_MODES)}, {"type": "null"}]},
        "max_agent_restart_attempts": {"type": ["integer", "null"], "minimum": 0},
    },
}

MANIFEST: Final[dict[str, Any]] = {
    "title": "Manifest",
    "description": "A raw manifest (SPEC §5); unknown keys are ignored. A body with `bundle_id` or "
    "`_bundle_path` is a bundle submission instead.",
    "type": "object",
    "required": ["manifest_version", "graph_id", "nodes"],
    "properties": {
        "manifest_version": {**NOT_NULL, "description": "Any value but null, kept as given."},
        "graph_id": {"type": "string", "pattern": GRAPH_ID_PATTERN},
        "job_name": {"type": ["string", "null"]},
        "daemon": {"type": "boolean"},
        "long_lived": {"description": "Alias of daemon, read when daemon is absent (then a boolean)."},
        "metadata": {"description": "Opaque (default {})."},
        "nodes": {"type": "array", "minItems": 1, "maxItems": MAX_NODES, "items": _ref("GraphNode")},
        "edges": {"type": ["array", "null"], "maxItems": MAX_EDGES, "items": _ref("Edge")},
        "entrypoints": {
            "description": "Node ids to seed; a string is one id; absent or null: the nodes with role "
            "root/root_coordinator.",
            "anyOf": [
                {"type": "array", "items": {"type": "string"}},
                {"type": "string"},
                {"type": ["null", "boolean", "number", "object"]},
            ],
        },
        "initial_inputs": INITIAL_INPUTS,
        "policies": {"anyOf": [_ref("Policies"), {"type": "null"}]},
        "reload": {"description": "Bundle reload settings {mode, interval_seconds} (§9.5), not validated."},
    },
    "not": {"anyOf": [{"required": ["bundle_id"]}, {"required": ["_bundle_path"]}]},
}

BUNDLE_SUBMISSION: Final[dict[str, Any]] = {
    "title": "BundleSubmission",
    "description": "Submit the current version of a registered bundle (SPEC §2.7 (b)).",
    "type": "object",
    "required": ["bundle_id"],
    "additionalProperties": False,
    "properties": {"bundle_id": {"type": "string", "minLength": 1}, "initial_inputs": INITIAL_INPUTS},
}

UPLOADED_BUNDLE_SUBMISSION: Final[dict[str, Any]] = {
    "title": "UploadedBundleSubmission",
    "description": "Submit a bundle version stored by POST /bundles/upload: its `bundle_path` (C.2.4).",
    "type": "object",
    "required": ["_bundle_path"],
    "additionalProperties": False,
    "properties": {
        "_bundle_path": {"type": "string", "pattern": r"^upload:[A-Za-z0-9_.\-]{1,128}@[0-9a-f]{64}$"},
        "initial_inputs": INITIAL_INPUTS,
    },
}

SUBMISSION: Final[dict[str, Any]] = {
    "oneOf": [_ref("Manifest"), _ref("BundleSubmission"), _ref("UploadedBundleSubmission")]
}

SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "Manifest": MANIFEST,
    "GraphNode": GRAPH_NODE,
    "Edge": EDGE,
    "Policies": POLICIES,
    "BundleSubmission": BUNDLE_SUBMISSION,
    "UploadedBundleSubmission": UPLOADED_BUNDLE_SUBMISSION,
}
