"""Manifest normalisation and validation (SPEC §5, §7.5.1, §3.7, Appendix B.12–B.13)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.manifest import (
    Upload,
    UploadCheck,
    declares_uploads,
    executor_uploads,
    normalize_manifest,
    seed_payloads,
    validate_manifest,
)

DROP = object()
GRAPH_ID_ERROR = 'graph_id must be a non-empty string of at most 128 characters using only letters, digits, "_", "." and "-"'
ENTRY_ERROR = "manifest must define at least one entrypoint or one node with role root/root_coordinator"
FIELD_NAMES = [
    "manifest_version",
    "graph_id",
    "job_name",
    "daemon",
    "long_lived",
    "metadata",
    "nodes",
    "edges",
    "entrypoints",
    "initial_inputs",
    "policies",
    "reload",
    "node_id",
    "agent_type",
    "type",
    "role",
    "config",
    "edge_id",
    "from_node",
    "to_node",
    "message_type",
    "recovery_mode",
    "max_agent_restart_attempts",
    "command",
    "timeout_seconds",
    "upload_paths",
    "uploads",
    "upload_path",
    "upload_as",
    "source",
    "target",
    "mode",
    "interval_seconds",
]
ROOT = {"node_id": "a", "agent_type": "router", "role": "root"}


def manifest(**fields: Any) -> dict[str, Any]:
    """A valid raw manifest with the given top-level fields replaced (DROP removes a key)."""
    base: dict[str, Any] = {"manifest_version": "1", "graph_id": "g", "nodes": [dict(ROOT)]}
    base.update(fields)
    return {key: value for key, value in base.items() if value is not DROP}


def with_nodes(*nodes: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A manifest whose nodes are the root node followed by the given nodes."""
    return manifest(nodes=[dict(ROOT), *nodes], **fields)


def executor(config: Any, node_id: str = "x", agent_type: str = "executor") -> dict[str, Any]:
    """An executor graph node with the given config."""
    return {"node_id": node_id, "agent_type": agent_type, "config": config}


def raw_errors(raw: Any) -> list[str]:
    """Validate a raw (non-bundle) manifest."""
    return validate_manifest(raw, has_bundle=False, resolve_upload=None)


# ---------------------------------------------------------------------------------------------
# Validation: the spec example and cross-group ordering
# ---------------------------------------------------------------------------------------------


def test_spec_example_yields_exactly_four_errors() -> None:
    assert raw_errors({"graph": {}, "agents": []}) == [
        "manifest_version is required",
        "graph_id is required",
        "nodes must not be empty",
        ENTRY_ERROR,
    ]


def test_valid_manifest_has_no_errors() -> None:
    assert raw_errors(manifest()) == []


def test_errors_of_every_group_come_in_group_order() -> None:
    raw = {
        "manifest_version": None,
        "graph_id": "bad id",
        "nodes": [
            {"node_id": "a", "agent_type": "bogus", "role": "root"},
            executor({"command": 5}, node_id="x"),
        ],
        "edges": [{"edge_id": "e", "from_node": "a", "to_node": "nope", "message_type": "m"}],
        "entrypoints": ["a", "ghost"],
        "initial_inputs": {"a": [1]},
        "daemon": "yes",
        "policies": {"recovery_mode": "eventually", "max_agent_restart_attempts": -1},
    }
    assert raw_errors(raw) == [
        "manifest_version is required",
        GRAPH_ID_ERROR,
        'unsupported agent_type "bogus" for node a',
        "edge e references missing to_node nope",
        "entrypoint ghost does not reference a known node",
        "initial_inputs for a must contain only objects",
        "daemon must be a boolean",
        'unsupported recovery_mode "eventually"',
        "max_agent_restart_attempts must be a non-negative integer",
        "command must be a string or a list of strings for node x",
    ]


# ---------------------------------------------------------------------------------------------
# Group 1 — top level
# ---------------------------------------------------------------------------------------------

GROUP_1 = [
    ("manifest_version missing", manifest(manifest_version=DROP), ["manifest_version is required"]),
    ("manifest_version null", manifest(manifest_version=None), ["manifest_version is required"]),
    ("manifest_version false is a value", manifest(manifest_version=False), []),
    ("manifest_version 0 is a value", manifest(manifest_version=0), []),
    ("graph_id missing", manifest(graph_id=DROP), ["graph_id is required"]),
    ("graph_id null", manifest(graph_id=None), ["graph_id is required"]),
    ("graph_id empty", manifest(graph_id=""), [GRAPH_ID_ERROR]),
    ("graph_id space", manifest(graph_id="a b"), [GRAPH_ID_ERROR]),
    ("graph_id colon", manifest(graph_id="bundle:x"), [GRAPH_ID_ERROR]),
    ("graph_id non-ascii", manifest(graph_id="é"), [GRAPH_ID_ERROR]),
    ("graph_id trailing newline", manifest(graph_id="abc\n"), [GRAPH_ID_ERROR]),
    ("graph_id 129 chars", manifest(graph_id="x" * 129), [GRAPH_ID_ERROR]),
    ("graph_id 128 chars", manifest(graph_id="x" * 128), []),
    ("graph_id all allowed chars", manifest(graph_id="Az09_.-"), []),
    ("graph_id number", manifest(graph_id=5), [GRAPH_ID_ERROR]),
    ("graph_id boolean", manifest(graph_id=True), [GRAPH_ID_ERROR]),
    ("job_name number", manifest(job_name=5), ["job_name must be a string"]),
    ("job_name null", manifest(job_name=None), []),
    ("job_name empty string", manifest(job_name=""), []),
    ("nodes missing", manifest(nodes=DROP), ["nodes must not be empty", ENTRY_ERROR]),
    ("nodes null", manifest(nodes=None), ["nodes must not be empty", ENTRY_ERROR]),
    ("nodes empty list", manifest(nodes=[]), ["nodes must not be empty", ENTRY_ERROR]),
    ("nodes object", manifest(nodes={}), ["nodes must be a list", ENTRY_ERROR]),
    ("nodes string", manifest(nodes="a"), ["nodes must be a list", ENTRY_ERROR]),
    ("edges object", manifest(edges={}), ["edges must be a list"]),
    ("edges null", manifest(edges=None), []),
    ("edges empty", manifest(edges=[]), []),
]


@pytest.mark.parametrize(("raw", "expected"), [case[1:] for case in GROUP_1], ids=[c[0] for c in GROUP_1])
def test_group_1_top_level(raw: dict[str, Any], expected: list[str]) -> None:
    assert raw_errors(raw) == expected


def test_group_1_all_errors_in_rule_order() -> None:
    raw = {"graph_id": "bad id", "job_name": 1, "nodes": {}, "edges": 5}
    assert raw_errors(raw) == [
        "manifest_version is required",
        GRAPH_ID_ERROR,
        "job_name must be a string",
        "nodes must be a list",
        "edges must be a list",
        ENTRY_ERROR,
    ]


def test_nodes_limit() -> None:
    nodes = [{"node_id": f"n{i}", "agent_type": "router", "role": "root"} for i in range(10001)]
    assert raw_errors(manifest(nodes=nodes)) == ["nodes must not contain more than 10000 entries"]
    assert raw_errors(manifest(nodes=nodes[:10000])) == []


def test_edges_limit() -> None:
    edge = {"from_node": "a", "to_node": "a", "message_type": "m"}
    assert raw_errors(manifest(edges=[edge] * 100001)) == ["edges must not contain more than 100000 entries"]
    assert raw_errors(manifest(edges=[edge] * 100000)) == []


# ---------------------------------------------------------------------------------------------
# Group 2 — graph nodes
# ---------------------------------------------------------------------------------------------

GROUP_2 = [
    (
        "not an object",
        [dict(ROOT), 5, "x"],
        ["node at index 1 must be an object", "node at index 2 must be an object"],
    ),
    (
        "aliases accepted",
        [
            dict(ROOT),
            *(executor({}, n, t) for n, t in [("r", "relay"), ("s", "sandbox_worker"), ("c", "collector")]),
        ],
        [],
    ),
    (
        "every canonical type",
        [
            dict(ROOT),
            *({"node_id": t, "agent_type": t} for t in ["executor", "aggregator", "sensor", "module"]),
        ],
        [],
    ),
    (
        "agent_type missing",
        [dict(ROOT), {"node_id": "router"}],
        ["unsupported agent_type nil for node router"],
    ),
    (
        "agent_type null",
        [dict(ROOT), {"node_id": "b", "agent_type": None}],
        ["unsupported agent_type nil for node b"],
    ),
    (
        "agent_type unknown",
        [dict(ROOT), {"node_id": "b", "agent_type": "bogus"}],
        ['unsupported agent_type "bogus" for node b'],
    ),
    (
        "agent_type number",
        [dict(ROOT), {"node_id": "b", "agent_type": 5}],
        ["unsupported agent_type 5 for node b"],
    ),
    (
        "agent_type boolean",
        [dict(ROOT), {"node_id": "b", "agent_type": True}],
        ["unsupported agent_type true for node b"],
    ),
    (
        "agent_type list",
        [dict(ROOT), {"node_id": "b", "agent_type": ["router"]}],
        ['unsupported agent_type ["router"] for node b'],
    ),
    (
        "agent_type case matters",
        [dict(ROOT), {"node_id": "b", "agent_type": "Router"}],
        ['unsupported agent_type "Router" for node b'],
    ),
    (
        "unknown template gives 2.4 and 2.5",
        [dict(ROOT), {"node_id": "b", "agent_type": "executor", "type": "weird"}],
        [
            'unsupported template type "weird" for node b',
            'template type "weird" is not supported for agent_type "executor" on node b',
        ],
    ),
    (
        "template not allowed for router",
        [dict(ROOT), {"node_id": "b", "agent_type": "router", "type": "reduce"}],
        ['template type "reduce" is not supported for agent_type "router" on node b'],
    ),
    (
        "alias agent_type rendered canonical",
        [dict(ROOT), {"node_id": "b", "agent_type": "collector", "type": "map"}],
        ['template type "map" is not supported for agent_type "aggregator" on node b'],
    ),
    (
        "accumulator is reduce for aggregator",
        [dict(ROOT), {"node_id": "b", "agent_type": "aggregator", "type": "accumulator"}],
        [],
    ),
    (
        "accumulator rendered canonical",
        [dict(ROOT), {"node_id": "b", "agent_type": "sensor", "type": "accumulator"}],
        ['template type "reduce" is not supported for agent_type "sensor" on node b'],
    ),
    (
        "unknown agent_type allows only generic",
        [dict(ROOT), {"node_id": "b", "agent_type": "bogus", "type": "map"}],
        [
            'unsupported agent_type "bogus" for node b',
            'template type "map" is not supported for agent_type "bogus" on node b',
        ],
    ),
    (
        "template null/empty/non-string is generic",
        [
            dict(ROOT),
            *(
                {"node_id": f"s{i}", "agent_type": "sensor", "type": t}
                for i, t in enumerate([None, "", 5, True])
            ),
        ],
        [],
    ),
    (
        "executor templates",
        [
            dict(ROOT),
            *(
                {"node_id": t, "agent_type": "executor", "type": t}
                for t in ["generic", "stream", "map", "reduce", "batch"]
            ),
        ],
        [],
    ),
    (
        "module templates",
        [
            dict(ROOT),
            *(
                {"node_id": t, "agent_type": "module", "type": t}
                for t in ["generic", "stream", "map", "reduce", "batch"]
            ),
        ],
        [],
    ),
    ("router map", [dict(ROOT), {"node_id": "b", "agent_type": "router", "type": "map"}], []),
    (
        "sensor map",
        [dict(ROOT), {"node_id": "b", "agent_type": "sensor", "type": "map"}],
        ['template type "map" is not supported for agent_type "sensor" on node b'],
    ),
    ("node_id missing", [dict(ROOT), {"agent_type": "router"}], ["node_id is required for every node"]),
    (
        "node_id null",
        [dict(ROOT), {"node_id": None, "agent_type": "router"}],
        ["node_id is required for every node"],
    ),
    (
        "node_id empty, twice, never a duplicate",
        [dict(ROOT), {"node_id": "", "agent_type": "router"}, {"node_id": "", "agent_type": "router"}],
        ["node_id is required for every node", "node_id is required for every node"],
    ),
    (
        "node_id number",
        [dict(ROOT), {"node_id": 5, "agent_type": "router"}],
        ["node_id must be a string of at most 128 characters (node at index 1)"],
    ),
    (
        "node_id boolean",
        [dict(ROOT), {"node_id": False, "agent_type": "router"}],
        ["node_id must be a string of at most 128 characters (node at index 1)"],
    ),
    (
        "node_id 129 chars",
        [dict(ROOT), {"node_id": "n" * 129, "agent_type": "router"}],
        ["node_id must be a string of at most 128 characters (node at index 1)"],
    ),
    ("node_id 128 chars", [dict(ROOT), {"node_id": "n" * 128, "agent_type": "router"}], []),
    (
        "config number",
        [dict(ROOT), {"node_id": "b", "agent_type": "router", "config": 5}],
        ["config must be an object for node b"],
    ),
    (
        "config list",
        [dict(ROOT), {"node_id": "b", "agent_type": "router", "config": []}],
        ["config must be an object for node b"],
    ),
    ("config null", [dict(ROOT), {"node_id": "b", "agent_type": "router", "config": None}], []),
    (
        "missing id renders empty",
        [dict(ROOT), {"config": 1}],
        [
            "unsupported agent_type nil for node ",
            "node_id is required for every node",
            "config must be an object for node ",
        ],
    ),
    (
        "non-string id renders as JSON",
        [dict(ROOT), {"node_id": 7, "agent_type": "x"}],
        [
            'unsupported agent_type "x" for node 7',
            "node_id must be a string of at most 128 characters (node at index 1)",
        ],
    ),
]


@pytest.mark.parametrize(("nodes", "expected"), [case[1:] for case in GROUP_2], ids=[c[0] for c in GROUP_2])
def test_group_2_nodes(nodes: list[Any], expected: list[str]) -> None:
    assert raw_errors(manifest(nodes=nodes)) == expected


DUPLICATES = [
    (
        "reported once per id at second occurrence",
        ["a", "b", "a", "b", "a"],
        ["duplicate node_id a", "duplicate node_id b"],
    ),
    (
        "order of second occurrence",
        ["a", "b", "c", "c", "b", "a"],
        ["duplicate node_id c", "duplicate node_id b", "duplicate node_id a"],
    ),
    ("no duplicates", ["a", "b", "c"], []),
]


@pytest.mark.parametrize(
    ("ids", "expected"), [case[1:] for case in DUPLICATES], ids=[c[0] for c in DUPLICATES]
)
def test_duplicate_node_ids(ids: list[str], expected: list[str]) -> None:
    nodes = [{"node_id": node_id, "agent_type": "router", "role": "root"} for node_id in ids]
    assert raw_errors(manifest(nodes=nodes)) == expected


def test_duplicate_non_string_ids_are_rendered_as_json() -> None:
    nodes = [dict(ROOT), {"node_id": 7, "agent_type": "router"}, {"node_id": 7, "agent_type": "router"}]
    assert raw_errors(manifest(nodes=nodes)) == [
        "duplicate node_id 7",
        "node_id must be a string of at most 128 characters (node at index 1)",
        "node_id must be a string of at most 128 characters (node at index 2)",
    ]


def test_duplicate_ids_do_not_confuse_booleans_numbers_and_strings() -> None:
    nodes = [dict(ROOT), *({"node_id": v, "agent_type": "router"} for v in [1, True, "1", 1.0])]
    assert [e for e in raw_errors(manifest(nodes=nodes)) if e.startswith("duplicate")] == []


def test_group_2_runs_each_check_over_all_nodes_before_the_next() -> None:
    nodes = [
        {"node_id": "a", "agent_type": "bogus", "role": "root", "config": 1},
        7,
        {"node_id": "a", "agent_type": "router", "type": "zzz"},
        {"agent_type": "sensor", "type": "map", "config": "c"},
        {"node_id": 9, "agent_type": "nope"},
    ]
    assert raw_errors(manifest(nodes=nodes)) == [
        "node at index 1 must be an object",
        "duplicate node_id a",
        'unsupported agent_type "bogus" for node a',
        'unsupported agent_type "nope" for node 9',
        'unsupported template type "zzz" for node a',
        'template type "zzz" is not supported for agent_type "router" on node a',
        'template type "map" is not supported for agent_type "sensor" on node ',
        "node_id is required for every node",
        "node_id must be a string of at most 128 characters (node at index 4)",
        "config must be an object for node a",
        "config must be an object for node ",
    ]


# ---------------------------------------------------------------------------------------------
# Group 3 — edges
# ---------------------------------------------------------------------------------------------

GROUP_3 = [
    ("valid edge", [{"edge_id": "e", "from_node": "a", "to_node": "a", "message_type": "*"}], []),
    ("not an object", [5, None], ["edge at index 0 must be an object", "edge at index 1 must be an object"]),
    (
        "everything missing",
        [{"edge_id": "e1"}],
        [
            "edge e1 references missing from_node ",
            "edge e1 references missing to_node ",
            "edge e1 must define message_type",
        ],
    ),
    (
        "unknown nodes",
        [{"edge_id": "e1", "from_node": "x", "to_node": "y", "message_type": "m"}],
        ["edge e1 references missing from_node x", "edge e1 references missing to_node y"],
    ),
    (
        "edge_id absent renders unknown",
        [{"from_node": "x", "to_node": "a", "message_type": "m"}],
        ["edge unknown references missing from_node x"],
    ),
    (
        "edge_id null renders unknown",
        [{"edge_id": None, "from_node": "a", "to_node": "a"}],
        ["edge unknown must define message_type"],
    ),
    (
        "edge_id number renders JSON",
        [{"edge_id": 3, "from_node": "a", "to_node": "a", "message_type": ""}],
        ["edge 3 must define message_type"],
    ),
    (
        "message_type number",
        [{"edge_id": "e", "from_node": "a", "to_node": "a", "message_type": 5}],
        ["edge e must define message_type"],
    ),
    (
        "message_type null",
        [{"edge_id": "e", "from_node": "a", "to_node": "a", "message_type": None}],
        ["edge e must define message_type"],
    ),
    (
        "node refs rendered as JSON",
        [{"edge_id": "e", "from_node": ["a"], "to_node": {"n": 1}, "message_type": "m"}],
        ['edge e references missing from_node ["a"]', 'edge e references missing to_node {"n":1}'],
    ),
    (
        "3.1 over all entries first, then per edge",
        [
            {"edge_id": "e1", "from_node": "x", "to_node": "a"},
            7,
            {"edge_id": "e2", "from_node": "a", "to_node": "y", "message_type": "m"},
        ],
        [
            "edge at index 1 must be an object",
            "edge e1 references missing from_node x",
            "edge e1 must define message_type",
            "edge e2 references missing to_node y",
        ],
    ),
]


@pytest.mark.parametrize(("edges", "expected"), [case[1:] for case in GROUP_3], ids=[c[0] for c in GROUP_3])
def test_group_3_edges(edges: list[Any], expected: list[str]) -> None:
    assert raw_errors(manifest(edges=edges)) == expected


def test_edges_referencing_a_node_without_id_are_missing() -> None:
    raw = manifest(
        nodes=[dict(ROOT), {"agent_type": "router"}],
        edges=[{"edge_id": "e", "to_node": "a", "message_type": "m"}],
    )
    assert raw_errors(raw) == ["node_id is required for every node", "edge e references missing from_node "]


# ---------------------------------------------------------------------------------------------
# Group 4 — entrypoints and initial inputs
# ---------------------------------------------------------------------------------------------

PLAIN = {"node_id": "p", "agent_type": "router"}

GROUP_4 = [
    ("no entrypoint and no root", manifest(nodes=[dict(PLAIN)]), [ENTRY_ERROR]),
    ("root_coordinator counts", manifest(nodes=[{**PLAIN, "role": "root_coordinator"}]), []),
    ("string entrypoint", manifest(nodes=[dict(PLAIN)], entrypoints="p"), []),
    ("list entrypoint", manifest(nodes=[dict(PLAIN)], entrypoints=["p"]), []),
    ("explicit empty with root passes", manifest(entrypoints=[]), []),
    ("explicit empty without root fails", manifest(nodes=[dict(PLAIN)], entrypoints=[]), [ENTRY_ERROR]),
    ("other type becomes empty, no root", manifest(nodes=[dict(PLAIN)], entrypoints=5), [ENTRY_ERROR]),
    ("other type becomes empty, root passes", manifest(entrypoints=5), []),
    (
        "unknown entrypoint",
        manifest(entrypoints=["a", "ghost"]),
        ["entrypoint ghost does not reference a known node"],
    ),
    (
        "unknown string entrypoint",
        manifest(entrypoints="ghost"),
        ["entrypoint ghost does not reference a known node"],
    ),
    (
        "non-string entrypoints",
        manifest(entrypoints=[5, None]),
        ["entrypoint 5 does not reference a known node", "entrypoint  does not reference a known node"],
    ),
    ("initial_inputs string", manifest(initial_inputs="x"), ["initial_inputs must be an object or a list"]),
    ("initial_inputs number", manifest(initial_inputs=5), ["initial_inputs must be an object or a list"]),
    (
        "initial_inputs boolean",
        manifest(initial_inputs=False),
        ["initial_inputs must be an object or a list"],
    ),
    ("initial_inputs null", manifest(initial_inputs=None), []),
    ("initial_inputs object payload", manifest(initial_inputs={"a": {"x": 1}}), []),
    ("initial_inputs list of objects", manifest(initial_inputs={"a": [{"x": 1}, {}]}), []),
    ("initial_inputs empty list", manifest(initial_inputs={"a": []}), []),
    (
        "non-object payload",
        manifest(initial_inputs={"a": 5}),
        ["initial_inputs for a must contain only objects"],
    ),
    (
        "null payload",
        manifest(initial_inputs={"a": None}),
        ["initial_inputs for a must contain only objects"],
    ),
    (
        "non-object in list",
        manifest(initial_inputs={"a": [{"x": 1}, "y"]}),
        ["initial_inputs for a must contain only objects"],
    ),
    ("key that is not an entrypoint is ignored", manifest(initial_inputs={"other": 5}), []),
    (
        "list form",
        manifest(initial_inputs=[{}, 1]),
        ["initial_inputs for __entrypoints__ must contain only objects"],
    ),
    (
        "explicit __entrypoints__",
        manifest(initial_inputs={"__entrypoints__": [2]}),
        ["initial_inputs for __entrypoints__ must contain only objects"],
    ),
    (
        "each seeding key once, in key order",
        manifest(
            nodes=[dict(ROOT), {"node_id": "b", "agent_type": "router", "role": "root"}],
            initial_inputs={"b": [1, 2], "zz": 1, "__entrypoints__": [3], "a": "x"},
        ),
        [
            "initial_inputs for b must contain only objects",
            "initial_inputs for __entrypoints__ must contain only objects",
            "initial_inputs for a must contain only objects",
        ],
    ),
]


@pytest.mark.parametrize(("raw", "expected"), [case[1:] for case in GROUP_4], ids=[c[0] for c in GROUP_4])
def test_group_4_entrypoints(raw: dict[str, Any], expected: list[str]) -> None:
    assert raw_errors(raw) == expected


# ---------------------------------------------------------------------------------------------
# Groups 5 and 6 — daemon, policies
# ---------------------------------------------------------------------------------------------

DAEMON_ERROR = "daemon must be a boolean"
ATTEMPTS_ERROR = "max_agent_restart_attempts must be a non-negative integer"

GROUP_5_6 = [
    ("daemon true", manifest(daemon=True), []),
    ("daemon false", manifest(daemon=False), []),
    ("daemon string", manifest(daemon="yes"), [DAEMON_ERROR]),
    ("daemon number", manifest(daemon=1), [DAEMON_ERROR]),
    ("daemon null is present", manifest(daemon=None), [DAEMON_ERROR]),
    ("long_lived alias checked", manifest(long_lived=1), [DAEMON_ERROR]),
    ("long_lived true", manifest(long_lived=True), []),
    ("daemon wins over long_lived", manifest(daemon=False, long_lived="x"), []),
    ("policies list", manifest(policies=[]), ["policies must be an object"]),
    ("policies string", manifest(policies="x"), ["policies must be an object"]),
    ("policies null", manifest(policies=None), []),
    ("policies empty", manifest(policies={}), []),
    (
        "recovery_mode unknown",
        manifest(policies={"recovery_mode": "eventually"}),
        ['unsupported recovery_mode "eventually"'],
    ),
    ("recovery_mode number", manifest(policies={"recovery_mode": 5}), ["unsupported recovery_mode 5"]),
    (
        "recovery_mode boolean",
        manifest(policies={"recovery_mode": False}),
        ["unsupported recovery_mode false"],
    ),
    ("recovery_mode null", manifest(policies={"recovery_mode": None}), []),
    ("local_restart", manifest(policies={"recovery_mode": "local_restart"}), []),
    ("cluster_recover", manifest(policies={"recovery_mode": "cluster_recover"}), []),
    ("manual_recover", manifest(policies={"recovery_mode": "manual_recover"}), []),
    ("attempts negative", manifest(policies={"max_agent_restart_attempts": -1}), [ATTEMPTS_ERROR]),
    ("attempts float", manifest(policies={"max_agent_restart_attempts": 1.5}), [ATTEMPTS_ERROR]),
    ("attempts whole float", manifest(policies={"max_agent_restart_attempts": 3.0}), [ATTEMPTS_ERROR]),
    ("attempts boolean true", manifest(policies={"max_agent_restart_attempts": True}), [ATTEMPTS_ERROR]),
    ("attempts boolean false", manifest(policies={"max_agent_restart_attempts": False}), [ATTEMPTS_ERROR]),
    ("attempts string", manifest(policies={"max_agent_restart_attempts": "3"}), [ATTEMPTS_ERROR]),
    ("attempts zero", manifest(policies={"max_agent_restart_attempts": 0}), []),
    ("attempts null", manifest(policies={"max_agent_restart_attempts": None}), []),
    (
        "both policy errors in order",
        manifest(policies={"max_agent_restart_attempts": -2, "recovery_mode": "x"}),
        ['unsupported recovery_mode "x"', ATTEMPTS_ERROR],
    ),
    ("daemon before policies", manifest(policies=1, daemon=2), [DAEMON_ERROR, "policies must be an object"]),
]


@pytest.mark.parametrize(("raw", "expected"), [case[1:] for case in GROUP_5_6], ids=[c[0] for c in GROUP_5_6])
def test_groups_5_and_6(raw: dict[str, Any], expected: list[str]) -> None:
    assert raw_errors(raw) == expected


# ---------------------------------------------------------------------------------------------
# Group 7 — executor configuration
# ---------------------------------------------------------------------------------------------

COMMAND_ERROR = "command must be a string or a list of strings for node x"
TIMEOUT_ERROR = "timeout_seconds must be a positive number for node x"
NO_BUNDLE_ERROR = "node x uploads files but the job has no bundle; submit it with bundle_id"

GROUP_7_NO_BUNDLE = [
    ("command string", {"command": "echo hi"}, []),
    ("command argv", {"command": ["echo", "hi"]}, []),
    ("command empty list", {"command": []}, []),
    ("command null", {"command": None}, []),
    ("command number", {"command": 5}, [COMMAND_ERROR]),
    ("command mixed list", {"command": ["echo", 1]}, [COMMAND_ERROR]),
    ("command object", {"command": {"a": 1}}, [COMMAND_ERROR]),
    ("timeout int", {"timeout_seconds": 10}, []),
    ("timeout float", {"timeout_seconds": 0.5}, []),
    ("timeout null", {"timeout_seconds": None}, []),
    ("timeout zero", {"timeout_seconds": 0}, [TIMEOUT_ERROR]),
    ("timeout negative", {"timeout_seconds": -1.5}, [TIMEOUT_ERROR]),
    ("timeout boolean", {"timeout_seconds": True}, [TIMEOUT_ERROR]),
    ("timeout string", {"timeout_seconds": "5"}, [TIMEOUT_ERROR]),
    ("upload_paths", {"upload_paths": ["a.txt"]}, [NO_BUNDLE_ERROR]),
    ("uploads alias", {"uploads": [{"source": "a"}]}, [NO_BUNDLE_ERROR]),
    ("upload_path", {"upload_path": "a.txt"}, [NO_BUNDLE_ERROR]),
    ("upload_path junk still declares", {"upload_path": 5}, [NO_BUNDLE_ERROR]),
    ("empty upload_paths", {"upload_paths": []}, []),
    ("null upload_path", {"upload_path": None}, []),
    ("7.3 skips 7.4 and 7.5", {"upload_paths": ["../x", {"source": "a", "target": "/t"}]}, [NO_BUNDLE_ERROR]),
    (
        "rule order 7.1 7.2 7.3",
        {"upload_path": "a", "timeout_seconds": 0, "command": 1},
        [COMMAND_ERROR, TIMEOUT_ERROR, NO_BUNDLE_ERROR],
    ),
]


@pytest.mark.parametrize(
    ("config", "expected"), [case[1:] for case in GROUP_7_NO_BUNDLE], ids=[c[0] for c in GROUP_7_NO_BUNDLE]
)
def test_group_7_without_bundle(config: dict[str, Any], expected: list[str]) -> None:
    assert raw_errors(with_nodes(executor(config))) == expected


def test_group_7_applies_to_sandbox_worker_alias_only_among_other_types() -> None:
    raw = with_nodes(
        executor({"command": 5}, node_id="r", agent_type="router"),
        executor({"command": 5}, node_id="m", agent_type="module"),
        executor({"command": 5}, node_id="s", agent_type="sandbox_worker"),
    )
    assert raw_errors(raw) == ["command must be a string or a list of strings for node s"]


def test_group_7_goes_node_by_node() -> None:
    raw = with_nodes(
        executor({"timeout_seconds": 0, "upload_path": "a"}, node_id="x"),
        executor({"command": 1}, node_id="y"),
    )
    assert raw_errors(raw) == [
        TIMEOUT_ERROR,
        NO_BUNDLE_ERROR,
        "command must be a string or a list of strings for node y",
    ]


def test_group_7_with_non_object_config_is_skipped() -> None:
    assert raw_errors(with_nodes(executor(5))) == ["config must be an object for node x"]


class FakePayloads:
    """A resolve_upload double: ``inside``/``missing`` name the sources so classified."""

    def __init__(self, outside: set[str] | None = None, missing: set[str] | None = None) -> None:
        self.outside = outside or set()
        self.missing = missing or set()
        self.calls: list[str] = []

    def __call__(self, source: str) -> UploadCheck:
        self.calls.append(source)
        absolute = source if source.startswith("/") else f"/bundle/payloads/{source}"
        return UploadCheck(
            inside=source not in self.outside, absolute_path=absolute, exists=source not in self.missing
        )


def bundle_errors(config: dict[str, Any], resolver: FakePayloads | None) -> list[str]:
    """Validate a bundle manifest with one executor node x."""
    return validate_manifest(with_nodes(executor(config)), has_bundle=True, resolve_upload=resolver)


def source_error(source: str) -> str:
    return f"upload source {source} for node x must be inside payloads/"


def target_error(target: str) -> str:
    return f'upload target {target} for node x must be a relative path without ".."'


GROUP_7_BUNDLE = [
    ("safe upload", {"upload_paths": ["data/in.txt"]}, []),
    ("dotdot source", {"upload_paths": ["../secret"]}, [source_error("../secret")]),
    ("inner dotdot source", {"upload_paths": ["a/../b"]}, [source_error("a/../b")]),
    ("dots inside a name are fine", {"upload_paths": ["a..b"]}, []),
    ("outside payloads", {"upload_paths": ["/etc/passwd"]}, [source_error("/etc/passwd")]),
    ("absolute target", {"upload_paths": [{"source": "a", "target": "/abs"}]}, [target_error("/abs")]),
    (
        "dotdot target",
        {"upload_paths": [{"source": "a", "target": "x/../../y"}]},
        [target_error("x/../../y")],
    ),
    ("upload_as target", {"upload_path": "a", "upload_as": "../up"}, [target_error("../up")]),
    (
        "default target of a dotdot source",
        {"upload_paths": ["a/.."]},
        [source_error("a/.."), target_error("..")],
    ),
    (
        "missing source",
        {"upload_paths": ["gone.txt"]},
        ["upload source does not exist: /bundle/payloads/gone.txt"],
    ),
    ("unsafe source is not checked for existence", {"upload_paths": ["../gone"]}, [source_error("../gone")]),
    (
        "checks in rule order over all uploads",
        {
            "command": 1,
            "upload_paths": ["gone.txt", {"source": "a", "target": "/t"}, "../x"],
            "upload_path": "/etc/passwd",
        },
        [
            COMMAND_ERROR,
            source_error("../x"),
            source_error("/etc/passwd"),
            target_error("/t"),
            "upload source does not exist: /bundle/payloads/gone.txt",
        ],
    ),
    ("junk entries are skipped", {"upload_paths": [5, {"source": 1}, {"target": "t"}, None]}, []),
]


@pytest.mark.parametrize(
    ("config", "expected"), [case[1:] for case in GROUP_7_BUNDLE], ids=[c[0] for c in GROUP_7_BUNDLE]
)
def test_group_7_with_bundle(config: dict[str, Any], expected: list[str]) -> None:
    resolver = FakePayloads(outside={"/etc/passwd"}, missing={"gone.txt", "../gone"})
    assert bundle_errors(config, resolver) == expected


def test_resolver_is_not_asked_about_dotdot_sources() -> None:
    resolver = FakePayloads()
    bundle_errors({"upload_paths": ["../x", "ok", {"source": "a/../b"}]}, resolver)
    assert resolver.calls == ["ok"]


def test_without_resolver_only_pure_upload_checks_run() -> None:
    config = {"upload_paths": ["/etc/passwd", "gone", "../x", {"source": "a", "target": "/t"}]}
    assert bundle_errors(config, None) == [source_error("../x"), target_error("/t")]


# ---------------------------------------------------------------------------------------------
# Uploads (§7.5.1, Appendix B.13)
# ---------------------------------------------------------------------------------------------

UPLOADS = [
    ("none", {}, []),
    (
        "string entries",
        {"upload_paths": ["a.txt", "dir/sub/b.py"]},
        [Upload("a.txt", "a.txt"), Upload("dir/sub/b.py", "b.py")],
    ),
    (
        "object entries",
        {"upload_paths": [{"source": "d/x", "target": "y"}, {"source": "d/z"}]},
        [Upload("d/x", "y"), Upload("d/z", "z")],
    ),
    ("null target defaults", {"upload_paths": [{"source": "d/x", "target": None}]}, [Upload("d/x", "x")]),
    ("trailing slash", {"upload_paths": ["dir/"]}, [Upload("dir/", "dir")]),
    ("alias uploads", {"uploads": ["a"]}, [Upload("a", "a")]),
    ("upload_paths wins over alias", {"upload_paths": ["a"], "uploads": ["b"]}, [Upload("a", "a")]),
    (
        "single shorthand appended",
        {"upload_paths": ["a"], "upload_path": "p/q", "upload_as": "r"},
        [Upload("a", "a"), Upload("p/q", "r")],
    ),
    ("single shorthand default target", {"upload_path": "/abs/p/q"}, [Upload("/abs/p/q", "q")]),
    (
        "junk skipped",
        {"upload_paths": [1, None, {"source": 2}, {"source": "s", "target": 3}, "ok"]},
        [Upload("ok", "ok")],
    ),
    ("upload_paths not a list", {"upload_paths": "a"}, []),
]


@pytest.mark.parametrize(("config", "expected"), [case[1:] for case in UPLOADS], ids=[c[0] for c in UPLOADS])
def test_executor_uploads(config: dict[str, Any], expected: list[Upload]) -> None:
    assert executor_uploads(config) == expected


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, False),
        ({"upload_paths": []}, False),
        ({"upload_paths": ["a"]}, True),
        ({"uploads": ["a"]}, True),
        ({"upload_paths": [], "uploads": ["a"]}, False),
        ({"upload_paths": "a"}, False),
        ({"upload_path": None}, False),
        ({"upload_path": ""}, True),
        (5, False),
    ],
)
def test_declares_uploads(config: Any, expected: bool) -> None:
    assert declares_uploads(config) is expected


# ---------------------------------------------------------------------------------------------
# Normalisation (§5.1–§5.5)
# ---------------------------------------------------------------------------------------------

DEFAULT_NODE_FIELDS: dict[str, Any] = {
    "type": "generic",
    "role": None,
    "config": {},
    "tool_bindings": [],
    "retry_policy": {},
    "checkpoint_policy": {},
    "spawn_policy": {},
}


def test_normalised_minimal_manifest_has_exactly_the_spec_keys_and_defaults() -> None:
    raw = manifest(unknown_key=1)
    assert normalize_manifest(raw) == {
        "manifest_version": "1",
        "graph_id": "g",
        "job_name": "g",
        "daemon": False,
        "metadata": {},
        "nodes": [{**DEFAULT_NODE_FIELDS, "node_id": "a", "agent_type": "router", "role": "root"}],
        "edges": [],
        "entrypoints": ["a"],
        "initial_inputs": {},
        "policies": {
            "placement_policy": "local",
            "recovery_mode": "local_restart",
            "max_agent_restart_attempts": 3,
        },
        "reload": {"mode": "manual", "interval_seconds": 60},
    }


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("relay", "router"),
        ("sandbox_worker", "executor"),
        ("collector", "aggregator"),
        ("sensor", "sensor"),
        ("module", "module"),
    ],
)
def test_agent_type_aliases_are_stored_canonical(given: str, canonical: str) -> None:
    node = normalize_manifest(manifest(nodes=[{**ROOT, "agent_type": given}]))["nodes"][0]
    assert node["agent_type"] == canonical


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        (None, "generic"),
        ("", "generic"),
        (5, "generic"),
        (False, "generic"),
        ("accumulator", "reduce"),
        ("map", "map"),
        ("batch", "batch"),
    ],
)
def test_templates_are_stored_canonical(given: Any, canonical: str) -> None:
    node = normalize_manifest(manifest(nodes=[{**ROOT, "type": given}]))["nodes"][0]
    assert node["type"] == canonical


def test_template_missing_is_generic() -> None:
    assert normalize_manifest(manifest())["nodes"][0]["type"] == "generic"


def test_node_fields_are_kept_as_given_and_unknown_node_keys_dropped() -> None:
    node = {
        "node_id": "a",
        "agent_type": "executor",
        "type": "map",
        "role": "worker",
        "config": {"command": "x"},
        "tool_bindings": ["t"],
        "retry_policy": {"r": 1},
        "checkpoint_policy": {"c": 1},
        "spawn_policy": {"s": 1},
        "description": "dropped",
    }
    normalised = normalize_manifest(manifest(nodes=[node], entrypoints="a"))["nodes"][0]
    assert normalised == {key: value for key, value in node.items() if key != "description"}


def test_node_null_fields_get_defaults() -> None:
    node = {**ROOT, "config": None, "tool_bindings": None, "retry_policy": None}
    assert normalize_manifest(manifest(nodes=[node]))["nodes"][0] == {
        **DEFAULT_NODE_FIELDS,
        "node_id": "a",
        "agent_type": "router",
        "role": "root",
    }


def test_edges_get_defaults_and_null_edge_id() -> None:
    edges = [
        {"from_node": "a", "to_node": "a", "message_type": "m", "extra": 1},
        {
            "edge_id": "e",
            "from_node": "a",
            "to_node": "a",
            "message_type": "*",
            "routing_mode": "rr",
            "conditions": {"k": 1},
        },
    ]
    assert normalize_manifest(manifest(edges=edges))["edges"] == [
        {
            "edge_id": None,
            "from_node": "a",
            "to_node": "a",
            "message_type": "m",
            "routing_mode": "broadcast",
            "conditions": {},
        },
        {
            "edge_id": "e",
            "from_node": "a",
            "to_node": "a",
            "message_type": "*",
            "routing_mode": "rr",
            "conditions": {"k": 1},
        },
    ]


ROOTS = [
    {"node_id": "b", "agent_type": "router", "role": "root_coordinator"},
    {"node_id": "c", "agent_type": "router"},
    {"node_id": "d", "agent_type": "router", "role": "root"},
]

ENTRYPOINTS = [
    ("derived from roots in node order", DROP, ["b", "d"]),
    ("null derived from roots", None, ["b", "d"]),
    ("string wrapped", "c", ["c"]),
    ("list kept as given", ["d", "c", "zz", "d"], ["d", "c", "zz", "d"]),
    ("explicit empty kept", [], []),
    ("other type becomes empty", 5, []),
    ("object becomes empty", {"a": 1}, []),
]


@pytest.mark.parametrize(
    ("value", "expected"), [case[1:] for case in ENTRYPOINTS], ids=[c[0] for c in ENTRYPOINTS]
)
def test_entrypoints_normalisation(value: Any, expected: list[Any]) -> None:
    assert normalize_manifest(manifest(nodes=ROOTS, entrypoints=value))["entrypoints"] == expected


INITIAL_INPUTS = [
    ("missing", DROP, {}),
    ("null", None, {}),
    ("object value wrapped", {"a": {"x": 1}}, {"a": [{"x": 1}]}),
    ("list value kept", {"a": [{"x": 1}, {"y": 2}]}, {"a": [{"x": 1}, {"y": 2}]}),
    ("empty list kept", {"a": []}, {"a": []}),
    ("scalar wrapped", {"a": 5}, {"a": [5]}),
    ("list form", [{"x": 1}], {"__entrypoints__": [{"x": 1}]}),
    ("invalid becomes empty", "x", {}),
]


@pytest.mark.parametrize(
    ("value", "expected"), [case[1:] for case in INITIAL_INPUTS], ids=[c[0] for c in INITIAL_INPUTS]
)
def test_initial_inputs_normalisation(value: Any, expected: dict[str, Any]) -> None:
    assert normalize_manifest(manifest(initial_inputs=value))["initial_inputs"] == expected


POLICIES = [
    (
        "missing",
        DROP,
        {"placement_policy": "local", "recovery_mode": "local_restart", "max_agent_restart_attempts": 3},
    ),
    (
        "null attempts means 3",
        {"max_agent_restart_attempts": None},
        {"placement_policy": "local", "recovery_mode": "local_restart", "max_agent_restart_attempts": 3},
    ),
    (
        "given values and other keys kept",
        {
            "placement_policy": "spread",
            "recovery_mode": "manual_recover",
            "max_agent_restart_attempts": 0,
            "x": [1],
        },
        {
            "placement_policy": "spread",
            "recovery_mode": "manual_recover",
            "max_agent_restart_attempts": 0,
            "x": [1],
        },
    ),
]


@pytest.mark.parametrize(("value", "expected"), [case[1:] for case in POLICIES], ids=[c[0] for c in POLICIES])
def test_policies_normalisation(value: Any, expected: dict[str, Any]) -> None:
    assert normalize_manifest(manifest(policies=value))["policies"] == expected


RELOADS = [
    ("missing", DROP, {"mode": "manual", "interval_seconds": 60}),
    ("valid", {"mode": "interval", "interval_seconds": 5}, {"mode": "interval", "interval_seconds": 5}),
    (
        "decimal interval",
        {"mode": "interval", "interval_seconds": 2.5},
        {"mode": "interval", "interval_seconds": 2.5},
    ),
    (
        "invalid values fall back",
        {"mode": "sometimes", "interval_seconds": -1},
        {"mode": "manual", "interval_seconds": 60},
    ),
    ("boolean interval falls back", {"interval_seconds": True}, {"mode": "manual", "interval_seconds": 60}),
    (
        "zero interval falls back",
        {"mode": "interval", "interval_seconds": 0},
        {"mode": "interval", "interval_seconds": 60},
    ),
    ("string interval falls back", {"interval_seconds": "5"}, {"mode": "manual", "interval_seconds": 60}),
    ("extra keys dropped", {"mode": "manual", "other": 1}, {"mode": "manual", "interval_seconds": 60}),
    ("non-object", "interval", {"mode": "manual", "interval_seconds": 60}),
]


@pytest.mark.parametrize(("value", "expected"), [case[1:] for case in RELOADS], ids=[c[0] for c in RELOADS])
def test_reload_normalisation(value: Any, expected: dict[str, Any]) -> None:
    assert normalize_manifest(manifest(reload=value))["reload"] == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, False),
        ({"daemon": True}, True),
        ({"long_lived": True}, True),
        ({"daemon": False, "long_lived": True}, False),
        ({"daemon": "yes"}, False),
    ],
)
def test_daemon_normalisation(fields: dict[str, Any], expected: bool) -> None:
    normalised = normalize_manifest(manifest(**fields))
    assert normalised["daemon"] is expected
    assert "long_lived" not in normalised


@pytest.mark.parametrize(
    ("fields", "expected"),
    [({}, "g"), ({"job_name": None}, "g"), ({"job_name": "Nice name"}, "Nice name")],
)
def test_job_name_defaults_to_graph_id(fields: dict[str, Any], expected: str) -> None:
    assert normalize_manifest(manifest(**fields))["job_name"] == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(DROP, {}), (None, {}), ({"k": [1]}, {"k": [1]}), ("opaque", "opaque")]
)
def test_metadata_is_opaque_with_empty_default(value: Any, expected: Any) -> None:
    assert normalize_manifest(manifest(metadata=value))["metadata"] == expected


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"nodes": "x", "edges": 5, "policies": [], "reload": 1, "entrypoints": {}},
        {"nodes": [1, None, {"node_id": 3}]},
    ],
)
def test_normalisation_of_odd_input_does_not_crash(raw: dict[str, Any]) -> None:
    assert list(normalize_manifest(raw)) == [
        "manifest_version",
        "graph_id",
        "job_name",
        "daemon",
        "metadata",
        "nodes",
        "edges",
        "entrypoints",
        "initial_inputs",
        "policies",
        "reload",
    ]


def test_normalised_manifest_does_not_alias_the_input() -> None:
    raw = manifest(
        metadata={"k": []}, initial_inputs={"a": [{"x": 1}]}, nodes=[{**ROOT, "config": {"c": []}}]
    )
    before = copy.deepcopy(raw)
    normalised = normalize_manifest(raw)
    normalised["metadata"]["k"].append(1)
    normalised["initial_inputs"]["a"][0]["x"] = 2
    normalised["nodes"][0]["config"]["c"].append(1)
    assert raw == before


def test_normalisation_is_idempotent() -> None:
    raw = manifest(
        nodes=[{**ROOT, "agent_type": "relay", "type": "accumulator"}], initial_inputs=[{}], long_lived=True
    )
    once = normalize_manifest(raw)
    assert normalize_manifest(once) == once


# ---------------------------------------------------------------------------------------------
# Seeding (§3.7 step 2)
# ---------------------------------------------------------------------------------------------

SEEDS = [
    ("default one empty payload", ["a", "b"], DROP, [("a", [{}]), ("b", [{}])]),
    ("per entrypoint key", ["a", "b"], {"b": {"x": 1}}, [("a", [{}]), ("b", [{"x": 1}])]),
    (
        "list form to every entrypoint",
        ["a", "b"],
        [{"x": 1}, {"x": 2}],
        [("a", [{"x": 1}, {"x": 2}]), ("b", [{"x": 1}, {"x": 2}])],
    ),
    (
        "key wins over list form",
        ["a", "b"],
        {"__entrypoints__": [{"l": 1}], "a": [{"k": 1}]},
        [("a", [{"k": 1}]), ("b", [{"l": 1}])],
    ),
    ("explicit empty list seeds nothing", ["a", "b"], {"a": []}, [("a", []), ("b", [{}])]),
    ("entrypoint order", ["b", "a"], {"a": {"n": 1}, "b": {"n": 2}}, [("b", [{"n": 2}]), ("a", [{"n": 1}])]),
    ("no entrypoints", [], {"a": {}}, []),
]


@pytest.mark.parametrize(
    ("entrypoints", "inputs", "expected"), [case[1:] for case in SEEDS], ids=[c[0] for c in SEEDS]
)
def test_seed_payloads(
    entrypoints: list[str], inputs: Any, expected: list[tuple[str, list[dict[str, Any]]]]
) -> None:
    nodes = [{"node_id": "a", "agent_type": "router"}, {"node_id": "b", "agent_type": "router"}]
    normalised = normalize_manifest(manifest(nodes=nodes, entrypoints=entrypoints, initial_inputs=inputs))
    assert seed_payloads(normalised) == expected


# ---------------------------------------------------------------------------------------------
# Robustness: odd input never crashes
# ---------------------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.sampled_from(["", "a", "..", "/x", "a/..", "root", "executor", "relay", "accumulator"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(FIELD_NAMES), children, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELD_NAMES), JSON_VALUES, max_size=8))
def test_odd_manifests_never_crash(raw: dict[str, Any]) -> None:
    errors = validate_manifest(raw, has_bundle=True, resolve_upload=FakePayloads())
    assert all(isinstance(error, str) for error in errors)
    assert validate_manifest(raw, has_bundle=False, resolve_upload=None) is not None
    normalised = normalize_manifest(raw)
    assert seed_payloads(normalised) is not None
    for node in normalised["nodes"]:
        assert all(isinstance(upload.target, str) for upload in executor_uploads(node["config"]))
