"""Manifest normalisation and validation (SPEC §5, §7.5.1, §7.5.3, Appendix B.12–B.13).

Pure: standard library only, no I/O. The two upload checks that need the filesystem
(§5.6 rules 7.4 and 7.6) are delegated to an injected ``resolve_upload`` callable.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Final, TypeGuard, TypeVar, cast

from app.domain.agent_kinds import COMMAND_TYPES

AGENT_TYPES: Final = ("router", "executor", "aggregator", "sensor", "module")
AGENT_TYPE_ALIASES: Final = {"relay": "router", "sandbox_worker": "executor", "collector": "aggregator"}
TEMPLATES: Final = ("generic", "stream", "map", "reduce", "batch")
TEMPLATE_ALIASES: Final = {"accumulator": "reduce"}
ALLOWED_TEMPLATES: Final[dict[str, frozenset[str]]] = {
    "router": frozenset({"generic", "map"}),
    "executor": frozenset(TEMPLATES),
    "aggregator": frozenset({"generic", "reduce"}),
    "sensor": frozenset({"generic"}),
    "module": frozenset(TEMPLATES),
}
UNKNOWN_AGENT_TEMPLATES: Final = frozenset({"generic"})
ROOT_ROLES: Final = ("root", "root_coordinator")
RECOVERY_MODES: Final = ("local_restart", "cluster_recover", "manual_recover")
RELOAD_MODES: Final = ("manual", "interval")
ENTRYPOINTS_KEY: Final = "__entrypoints__"
MAX_NODES: Final = 10000
MAX_EDGES: Final = 100000
MAX_ID_LENGTH: Final = 128
DEFAULT_POLICIES: Final[dict[str, Any]] = {
    "placement_policy": "local",
    "recovery_mode": "local_restart",
    "max_agent_restart_attempts": 3,
}
DEFAULT_RELOAD: Final[dict[str, Any]] = {"mode": "manual", "interval_seconds": 60}
NODE_DEFAULTS: Final[dict[str, Any]] = {
    "tool_bindings": [],
    "retry_policy": {},
    "checkpoint_policy": {},
    "spawn_policy": {},
}
EDGE_DEFAULTS: Final[dict[str, Any]] = {"routing_mode": "broadcast", "conditions": {}}

_GRAPH_ID_RE: Final = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_MISSING: Final = object()

GRAPH_ID_MESSAGE: Final = (
    "graph_id must be a non-empty string of at most 128 characters using only letters, digits,"
    ' "_", "." and "-"'
)
ENTRYPOINT_REQUIRED_MESSAGE: Final = (
    "manifest must define at least one entrypoint or one node with role root/root_coordinator"
)


@dataclass(frozen=True)
class UploadCheck:
    """What the filesystem says about one upload source of a bundle."""

    inside: bool
    absolute_path: str
    exists: bool


@dataclass(frozen=True)
class Upload:
    """One executor upload: a source (relative to payloads/ or absolute) and a staging target."""

    source: str
    target: str


ResolveUpload = Callable[[str], UploadCheck]


# --------------------------------------------------------------------------------------------
# Value helpers
# --------------------------------------------------------------------------------------------


def _compact_json(value: Any) -> str:
    """Return compact JSON text of a value (non-ASCII kept)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=repr)


def render_placeholder(value: Any) -> str:
    """Render a placeholder: a string as is, null/missing as "", anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return "" if value is None else _compact_json(value)


def render_inspect(value: Any) -> str:
    """Render an <inspect> placeholder: a string quoted, null/missing as nil, else compact JSON."""
    if isinstance(value, str):
        return f'"{value}"'
    return "nil" if value is None else _compact_json(value)


def _is_integer(value: Any) -> TypeGuard[int]:
    """Return True for ints that are not booleans."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> TypeGuard[int | float]:
    """Return True for ints and floats that are not booleans."""
    return isinstance(value, int | float) and not isinstance(value, bool)


_ID_KEY = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=repr)  # built once (see canonical_json)


def _id_key(value: Any) -> str:
    """Return a hashable identity for any JSON value (booleans distinct from numbers)."""
    # A string (every valid node_id) is its own key behind an "s", which no JSON text starts with.
    return "s" + value if type(value) is str else _ID_KEY.encode(value)


def _has_dotdot(path: str) -> bool:
    """Return True when a path has a ``..`` segment."""
    return ".." in path.split("/")


def _dict_or_empty(value: Any) -> dict[str, Any]:
    """Return the value when it is an object, else an empty object."""
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------------------------
# Canonical forms
# --------------------------------------------------------------------------------------------


def canonical_agent_type(value: Any) -> str | None:
    """Return the canonical agent type of a known type or alias, else None."""
    if not isinstance(value, str):
        return None
    if value in AGENT_TYPES:
        return value
    return AGENT_TYPE_ALIASES.get(value)


def canonical_template(value: Any) -> str:
    """Return the canonical template: generic for null/""/non-strings, accumulator as reduce."""
    if not isinstance(value, str) or value == "":
        return "generic"
    return TEMPLATE_ALIASES.get(value, value)


def allowed_templates(agent_type: Any) -> frozenset[str]:
    """Return the templates the §5.4 matrix allows for an agent_type (raw or canonical)."""
    canonical = canonical_agent_type(agent_type)
    return ALLOWED_TEMPLATES[canonical] if canonical is not None else UNKNOWN_AGENT_TEMPLATES


def _objects(entries: Any) -> list[dict[str, Any]]:
    """Return the object entries of a list value (none unless it is a list)."""
    return [entry for entry in entries if isinstance(entry, dict)] if isinstance(entries, list) else []


def _has_root(nodes: list[dict[str, Any]]) -> bool:
    """Return True when a node has role root or root_coordinator."""
    return any(node.get("role") in ROOT_ROLES for node in nodes)


_J = TypeVar("_J")


def _copied(value: _J) -> _J:
    """A deep copy of a JSON value (dicts, lists and scalars; anything else through copy.deepcopy).

    Normalising copies every part of a manifest it keeps; copy.deepcopy's generality (memo,
    reductors) made it 6 % of a submit's CPU.
    """
    return value if type(value) in _SCALARS else cast(_J, _copy(value))


_SCALARS = frozenset({str, int, float, bool, type(None)})  # exact types: a subclass is deep-copied


def _copy(value: Any) -> Any:
    # Scalars are kept where they are met, not copied by a call each (a manifest is mostly scalars).
    kind = type(value)
    if kind is dict:
        return {key: item if type(item) in _SCALARS else _copy(item) for key, item in value.items()}
    if kind is list:
        return [item if type(item) in _SCALARS else _copy(item) for item in value]
    if kind in _SCALARS:
        return value
    return copy.deepcopy(value)


def _same(value: _J) -> _J:
    return value


def normalize_entrypoints(
    value: Any, nodes: list[dict[str, Any]], *, copy: Callable[[Any], Any] = _copied
) -> list[Any]:
    """Return §5.1 entrypoints: lists kept, a string wrapped, missing/null derived from roots.

    Validation, which only reads the result, passes `copy=_same` (the parts are not copied).
    """
    if isinstance(value, list):
        return cast(list[Any], copy(value))
    if isinstance(value, str):
        return [value]
    if value is None:
        return [node.get("node_id") for node in nodes if node.get("role") in ROOT_ROLES]
    return []


def normalize_initial_inputs(value: Any, *, copy: Callable[[Any], Any] = _copied) -> dict[str, list[Any]]:
    """Return §5.1 initial_inputs: each value a list, a bare list under __entrypoints__.

    `copy`: see normalize_entrypoints.
    """
    if isinstance(value, list):
        return {ENTRYPOINTS_KEY: copy(value)}
    if isinstance(value, dict):
        return {key: copy(item) if isinstance(item, list) else [copy(item)] for key, item in value.items()}
    return {}


def _effective_daemon(raw: dict[str, Any]) -> Any:
    """Return ``daemon``, or its alias ``long_lived`` when the key is absent, or _MISSING."""
    if "daemon" in raw:
        return raw["daemon"]
    return raw.get("long_lived", _MISSING)


# --------------------------------------------------------------------------------------------
# Normalisation (§5.5)
# --------------------------------------------------------------------------------------------


def _with_defaults(value: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of an object whose missing or null default keys carry their defaults."""
    merged = _copied(value)
    for key, default in defaults.items():
        if merged.get(key) is None:
            merged[key] = _copied(default)
    return merged


def _kept(node: dict[str, Any], key: str, default: Any) -> Any:
    """Return a copy of a field as given, or the default when missing or null."""
    value = node.get(key)
    return _copied(default if value is None else value)


def normalize_node(node: dict[str, Any]) -> dict[str, Any]:
    """Return a graph node with exactly the §5.2 fields, canonical agent_type and template."""
    agent_type = node.get("agent_type")
    return {
        "node_id": _copied(node.get("node_id")),
        "agent_type": canonical_agent_type(agent_type) or _copied(agent_type),
        "type": canonical_template(node.get("type")),
        "role": _copied(node.get("role")),
        "config": _copied(_dict_or_empty(node.get("config"))),
        **{key: _kept(node, key, default) for key, default in NODE_DEFAULTS.items()},
    }


def normalize_edge(edge: dict[str, Any]) -> dict[str, Any]:
    """Return an edge with exactly the §5.3 fields (edge_id null when absent)."""
    return {
        "edge_id": _copied(edge.get("edge_id")),
        "from_node": _copied(edge.get("from_node")),
        "to_node": _copied(edge.get("to_node")),
        "message_type": _copied(edge.get("message_type")),
        **{key: _kept(edge, key, default) for key, default in EDGE_DEFAULTS.items()},
    }


def normalize_policies(value: Any) -> dict[str, Any]:
    """Return policies with placement_policy, recovery_mode and max_agent_restart_attempts set."""
    return _with_defaults(_dict_or_empty(value), DEFAULT_POLICIES)


def normalize_reload(value: Any) -> dict[str, Any]:
    """Return {"mode", "interval_seconds"}, invalid or missing values replaced by the defaults."""
    reload = _dict_or_empty(value)
    mode = reload.get("mode")
    interval = reload.get("interval_seconds")
    valid_interval = _is_number(interval) and math.isfinite(interval) and interval > 0
    return {
        "mode": mode if mode in RELOAD_MODES else DEFAULT_RELOAD["mode"],
        "interval_seconds": interval if valid_interval else DEFAULT_RELOAD["interval_seconds"],
    }


def _job_name(raw: dict[str, Any]) -> Any:
    """Return job_name when it is a string, else the graph_id."""
    job_name = raw.get("job_name")
    return job_name if isinstance(job_name, str) else _copied(raw.get("graph_id"))


def normalize_manifest(raw: dict[str, Any]) -> dict[str, Any]:
    """Return the §5.5 normalised manifest: exactly its keys, defaults applied, aliases canonical."""
    raw = _dict_or_empty(raw)
    nodes = _objects(raw.get("nodes"))
    daemon = _effective_daemon(raw)
    metadata = raw.get("metadata")
    return {
        "manifest_version": _copied(raw.get("manifest_version")),
        "graph_id": _copied(raw.get("graph_id")),
        "job_name": _job_name(raw),
        "daemon": daemon if isinstance(daemon, bool) else False,
        "metadata": {} if metadata is None else _copied(metadata),
        "nodes": [normalize_node(node) for node in nodes],
        "edges": [normalize_edge(edge) for edge in _objects(raw.get("edges"))],
        "entrypoints": normalize_entrypoints(raw.get("entrypoints"), nodes),
        "initial_inputs": normalize_initial_inputs(raw.get("initial_inputs")),
        "policies": normalize_policies(raw.get("policies")),
        "reload": normalize_reload(raw.get("reload")),
    }


# --------------------------------------------------------------------------------------------
# Uploads (§7.5.1, §7.5.3, Appendix B.13)
# --------------------------------------------------------------------------------------------


def default_upload_target(source: str) -> str:
    """Return the last path component of an upload source."""
    return PurePosixPath(source).name


def _upload(source: Any, target: Any) -> Upload | None:
    """Return an Upload for a string source and a string or absent target, else None."""
    if not isinstance(source, str):
        return None
    if target is None or target == "":
        return Upload(source, default_upload_target(source))
    return Upload(source, target) if isinstance(target, str) else None


def _upload_entry(entry: Any) -> Upload | None:
    """Return the Upload of one upload_paths entry (a string or {"source", "target"?})."""
    if isinstance(entry, dict):
        return _upload(entry.get("source"), entry.get("target"))
    return _upload(entry, None)


def _upload_list(config: dict[str, Any]) -> Any:
    """Return ``upload_paths``, or its alias ``uploads`` when the key is absent."""
    return config["upload_paths"] if "upload_paths" in config else config.get("uploads")


def declares_uploads(config: Any) -> bool:
    """Return True when an executor config declares uploads (Appendix B.13)."""
    config = _dict_or_empty(config)
    listed = _upload_list(config)
    return (isinstance(listed, list) and len(listed) > 0) or config.get("upload_path") is not None


def executor_uploads(config: Any) -> list[Upload]:
    """Return the uploads of an executor config in §7.5.1 order, skipping malformed entries."""
    config = _dict_or_empty(config)
    listed = _upload_list(config)
    entries = listed if isinstance(listed, list) else []
    uploads = [upload for entry in entries if (upload := _upload_entry(entry)) is not None]
    single = _upload(config.get("upload_path"), config.get("upload_as"))
    return uploads + ([single] if single is not None else [])


# --------------------------------------------------------------------------------------------
# Seeding (§3.7 step 2)
# --------------------------------------------------------------------------------------------


def seed_payloads(manifest: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Return, per entrypoint of a normalised manifest in order, the payloads it is seeded with."""
    inputs = _dict_or_empty(manifest.get("initial_inputs"))
    entrypoints = manifest.get("entrypoints")
    return [
        (entrypoint, _seed_list(inputs, entrypoint))
        for entrypoint in (entrypoints if isinstance(entrypoints, list) else [])
        if isinstance(entrypoint, str)
    ]


def _seed_list(inputs: dict[str, Any], entrypoint: str) -> list[dict[str, Any]]:
    """Return inputs[entrypoint], else inputs["__entrypoints__"], else [{}] (objects only)."""
    payloads = inputs.get(entrypoint, inputs.get(ENTRYPOINTS_KEY, [{}]))
    listed = payloads if isinstance(payloads, list) else [payloads]
    return [_copied(payload) for payload in listed if isinstance(payload, dict)]


# --------------------------------------------------------------------------------------------
# Validation (§5.6)
# --------------------------------------------------------------------------------------------


def validate_manifest(
    raw: dict[str, Any], *, has_bundle: bool, resolve_upload: ResolveUpload | None
) -> list[str]:
    """Return every §5.6 error of a raw manifest, in the specified order with exact messages."""
    raw = _dict_or_empty(raw)
    nodes = raw.get("nodes")
    node_objects = _objects(nodes)
    node_ids = _graph_node_ids(node_objects)
    return [
        *_top_level_errors(raw),
        *(_node_errors(nodes) if isinstance(nodes, list) else []),
        *_edge_errors(raw.get("edges"), node_ids),
        *_entrypoint_errors(raw, node_objects, node_ids),
        *_daemon_errors(raw),
        *_policy_errors(raw.get("policies")),
        *_executor_errors(node_objects, has_bundle, resolve_upload),
    ]


def _graph_node_ids(nodes: list[dict[str, Any]]) -> frozenset[str]:
    """Return the identity keys of every non-empty node_id."""
    return frozenset(_id_key(node["node_id"]) for node in nodes if node.get("node_id") not in (None, ""))


def _is_node_id(value: Any, node_ids: frozenset[str]) -> bool:
    """Return True when a value names a graph node."""
    return value not in (None, "") and _id_key(value) in node_ids


# Group 1 — top level -------------------------------------------------------------------------


def _top_level_errors(raw: dict[str, Any]) -> list[str]:
    """Return the group 1 errors (rules 1.1–1.9)."""
    graph_id = raw.get("graph_id")
    job_name = raw.get("job_name")
    nodes = raw.get("nodes")
    edges = raw.get("edges")
    checks = [
        (raw.get("manifest_version") is None, "manifest_version is required"),
        (graph_id is None, "graph_id is required"),
        (graph_id is not None and not _valid_graph_id(graph_id), GRAPH_ID_MESSAGE),
        (job_name is not None and not isinstance(job_name, str), "job_name must be a string"),
        (nodes is None or nodes == [], "nodes must not be empty"),
        (nodes is not None and not isinstance(nodes, list), "nodes must be a list"),
        (
            isinstance(nodes, list) and len(nodes) > MAX_NODES,
            "nodes must not contain more than 10000 entries",
        ),
        (edges is not None and not isinstance(edges, list), "edges must be a list"),
        (
            isinstance(edges, list) and len(edges) > MAX_EDGES,
            "edges must not contain more than 100000 entries",
        ),
    ]
    return [message for failed, message in checks if failed]


def _valid_graph_id(value: Any) -> bool:
    """Return True for a string of 1–128 characters from [A-Za-z0-9_.-]."""
    return isinstance(value, str) and _GRAPH_ID_RE.fullmatch(value) is not None


# Group 2 — graph nodes -----------------------------------------------------------------------


def _node_errors(nodes: list[Any]) -> list[str]:
    """Return the group 2 errors: each check over all nodes before the next check."""
    indexed = [(index, node) for index, node in enumerate(nodes) if isinstance(node, dict)]
    objects = [node for _, node in indexed]
    return [
        *(
            f"node at index {index} must be an object"
            for index, node in enumerate(nodes)
            if not isinstance(node, dict)
        ),
        *(f"duplicate node_id {render_placeholder(node_id)}" for node_id in _duplicate_node_ids(objects)),
        *(
            _agent_type_error(node)
            for node in objects
            if canonical_agent_type(node.get("agent_type")) is None
        ),
        *(_unknown_template_error(node) for node in objects if _template(node) not in TEMPLATES),
        *(_template_mismatch_error(node) for node in objects if not _template_allowed(node)),
        *("node_id is required for every node" for node in objects if node.get("node_id") in (None, "")),
        *(_node_id_error(index) for index, node in indexed if _bad_node_id(node.get("node_id"))),
        *(f"config must be an object for node {_id_text(node)}" for node in objects if _bad_config(node)),
    ]


def _id_text(node: dict[str, Any]) -> str:
    """Return the rendered node_id of a node for <id> placeholders."""
    return render_placeholder(node.get("node_id"))


def _duplicate_node_ids(nodes: Iterable[dict[str, Any]]) -> list[Any]:
    """Return each non-empty node_id that repeats, once, in order of its second occurrence."""
    seen: set[str] = set()
    reported: set[str] = set()
    duplicates: list[Any] = []
    for node in nodes:
        node_id = node.get("node_id")
        if node_id in (None, ""):
            continue
        key = _id_key(node_id)
        if key in seen and key not in reported:
            reported.add(key)
            duplicates.append(node_id)
        seen.add(key)
    return duplicates


def _agent_type_error(node: dict[str, Any]) -> str:
    """Return the rule 2.3 message for a node."""
    return f"unsupported agent_type {render_inspect(node.get('agent_type'))} for node {_id_text(node)}"


def _template(node: dict[str, Any]) -> str:
    """Return the canonical template of a node."""
    return canonical_template(node.get("type"))


def _unknown_template_error(node: dict[str, Any]) -> str:
    """Return the rule 2.4 message for a node."""
    return f'unsupported template type "{_template(node)}" for node {_id_text(node)}'


def _template_allowed(node: dict[str, Any]) -> bool:
    """Return True when the node's template is allowed for its agent_type (§5.4)."""
    return _template(node) in allowed_templates(node.get("agent_type"))


def _template_mismatch_error(node: dict[str, Any]) -> str:
    """Return the rule 2.5 message for a node (canonical agent_type, or the raw value)."""
    raw_type = node.get("agent_type")
    agent_type = canonical_agent_type(raw_type) or render_placeholder(raw_type)
    return (
        f'template type "{_template(node)}" is not supported for agent_type "{agent_type}"'
        f" on node {_id_text(node)}"
    )


def _bad_node_id(node_id: Any) -> bool:
    """Return True for a present, non-empty node_id that is not a string of ≤ 128 characters."""
    if node_id in (None, ""):
        return False
    return not (isinstance(node_id, str) and len(node_id) <= MAX_ID_LENGTH)


def _node_id_error(index: int) -> str:
    """Return the rule 2.7 message for a node index."""
    return f"node_id must be a string of at most 128 characters (node at index {index})"


def _bad_config(node: dict[str, Any]) -> bool:
    """Return True when config is present, not null and not an object."""
    config = node.get("config")
    return config is not None and not isinstance(config, dict)


# Group 3 — edges ------------------------------------------------------------------------------


def _edge_errors(edges: Any, node_ids: frozenset[str]) -> list[str]:
    """Return the group 3 errors: rule 3.1 over all entries, then 3.2–3.4 per edge."""
    if not isinstance(edges, list):
        return []
    not_objects = [
        f"edge at index {i} must be an object" for i, edge in enumerate(edges) if not isinstance(edge, dict)
    ]
    per_edge = [
        error for edge in edges if isinstance(edge, dict) for error in _one_edge_errors(edge, node_ids)
    ]
    return not_objects + per_edge


def _edge_label(edge: dict[str, Any]) -> str:
    """Return the edge's rendered edge_id, or ``unknown`` when absent or null."""
    edge_id = edge.get("edge_id")
    return "unknown" if edge_id is None else render_placeholder(edge_id)


def _one_edge_errors(edge: dict[str, Any], node_ids: frozenset[str]) -> list[str]:
    """Return rules 3.2–3.4 for one edge."""
    from_node = edge.get("from_node")
    to_node = edge.get("to_node")
    message_type = edge.get("message_type")
    bad_from = not _is_node_id(from_node, node_ids)
    bad_to = not _is_node_id(to_node, node_ids)
    bad_type = not (isinstance(message_type, str) and message_type)
    if not (bad_from or bad_to or bad_type):
        return []  # the usual case: no message rendered
    label = _edge_label(edge)
    checks = [
        (bad_from, f"edge {label} references missing from_node {render_placeholder(from_node)}"),
        (bad_to, f"edge {label} references missing to_node {render_placeholder(to_node)}"),
        (bad_type, f"edge {label} must define message_type"),
    ]
    return [message for failed, message in checks if failed]


# Group 4 — entrypoints and initial inputs -------------------------------------------------------


def _entrypoint_errors(
    raw: dict[str, Any], nodes: list[dict[str, Any]], node_ids: frozenset[str]
) -> list[str]:
    """Return the group 4 errors (rules 4.1–4.4)."""
    entrypoints = normalize_entrypoints(raw.get("entrypoints"), nodes, copy=_same)
    errors = [ENTRYPOINT_REQUIRED_MESSAGE] if not entrypoints and not _has_root(nodes) else []
    errors += [
        f"entrypoint {render_placeholder(entrypoint)} does not reference a known node"
        for entrypoint in entrypoints
        if not _is_node_id(entrypoint, node_ids)
    ]
    return errors + _initial_input_errors(raw.get("initial_inputs"), entrypoints)


def _initial_input_errors(value: Any, entrypoints: list[Any]) -> list[str]:
    """Return rule 4.3, or rule 4.4 for every seeding payload list holding a non-object."""
    if value is None:
        return []
    if not isinstance(value, dict | list):
        return ["initial_inputs must be an object or a list"]
    return [
        f"initial_inputs for {key} must contain only objects"
        for key, payloads in normalize_initial_inputs(value, copy=_same).items()
        if (key == ENTRYPOINTS_KEY or key in entrypoints)
        and not all(isinstance(payload, dict) for payload in payloads)
    ]


# Group 5 — daemon --------------------------------------------------------------------------------


def _daemon_errors(raw: dict[str, Any]) -> list[str]:
    """Return rule 5.1 when the effective daemon value is present and not a boolean."""
    daemon = _effective_daemon(raw)
    return ["daemon must be a boolean"] if daemon is not _MISSING and not isinstance(daemon, bool) else []


# Group 6 — policies ------------------------------------------------------------------------------


def _policy_errors(policies: Any) -> list[str]:
    """Return the group 6 errors (rules 6.1–6.3)."""
    if policies is None:
        return []
    if not isinstance(policies, dict):
        return ["policies must be an object"]
    mode = policies.get("recovery_mode")
    attempts = policies.get("max_agent_restart_attempts")
    checks = [
        (
            mode is not None and mode not in RECOVERY_MODES,
            f"unsupported recovery_mode {render_inspect(mode)}",
        ),
        (
            attempts is not None and not (_is_integer(attempts) and attempts >= 0),
            "max_agent_restart_attempts must be a non-negative integer",
        ),
    ]
    return [message for failed, message in checks if failed]


# Group 7 — executor configuration ------------------------------------------------------------------


def _executor_errors(
    nodes: list[dict[str, Any]], has_bundle: bool, resolve_upload: ResolveUpload | None
) -> list[str]:
    """Return the group 7 errors of every executor node, node by node."""
    return [
        error
        for node in nodes
        if canonical_agent_type(node.get("agent_type")) in COMMAND_TYPES
        for error in _executor_node_errors(node, has_bundle, resolve_upload)
    ]


def _executor_node_errors(
    node: dict[str, Any], has_bundle: bool, resolve_upload: ResolveUpload | None
) -> list[str]:
    """Return rules 7.1–7.6 for one executor node, in rule order."""
    config = _dict_or_empty(node.get("config"))
    node_id = _id_text(node)
    errors = _command_errors(config, node_id)
    if not has_bundle:
        uploads_error = f"node {node_id} uploads files but the job has no bundle; submit it with bundle_id"
        return errors + ([uploads_error] if declares_uploads(config) else [])
    return errors + _upload_errors(executor_uploads(config), node_id, resolve_upload)


def _command_errors(config: dict[str, Any], node_id: str) -> list[str]:
    """Return rules 7.1 (command) and 7.2 (timeout_seconds) for one executor config."""
    command = config.get("command")
    timeout = config.get("timeout_seconds")
    command_ok = isinstance(command, str) or (
        isinstance(command, list) and all(isinstance(a, str) for a in command)
    )
    timeout_ok = _is_number(timeout) and timeout > 0
    checks = [
        (
            command is not None and not command_ok,
            f"command must be a string or a list of strings for node {node_id}",
        ),
        (
            timeout is not None and not timeout_ok,
            f"timeout_seconds must be a positive number for node {node_id}",
        ),
    ]
    return [message for failed, message in checks if failed]


def _upload_errors(uploads: list[Upload], node_id: str, resolve_upload: ResolveUpload | None) -> list[str]:
    """Return rules 7.4 (all sources), 7.5 (all targets), then 7.6 (all safe sources)."""
    checks = [_check_source(upload.source, resolve_upload) for upload in uploads]
    unsafe_sources = [
        f"upload source {upload.source} for node {node_id} must be inside payloads/"
        for upload, check in zip(uploads, checks, strict=True)
        if _has_dotdot(upload.source) or (check is not None and not check.inside)
    ]
    unsafe_targets = [
        f'upload target {upload.target} for node {node_id} must be a relative path without ".."'
        for upload in uploads
        if upload.target.startswith("/") or _has_dotdot(upload.target)
    ]
    missing = [
        f"upload source does not exist: {check.absolute_path}"
        for check in checks
        if check is not None and check.inside and not check.exists
    ]
    return unsafe_sources + unsafe_targets + missing


def _check_source(source: str, resolve_upload: ResolveUpload | None) -> UploadCheck | None:
    """Return the filesystem check of a source without ``..`` segments, when a resolver is given."""
    if resolve_upload is None or _has_dotdot(source):
        return None
    return resolve_upload(source)
