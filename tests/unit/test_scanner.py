"""Reading bundle directories (SPEC §9.2, §9.5, §5.7) without a database."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from app.bundles.fingerprint import fingerprint
from app.bundles.scanner import (
    BundleCandidate,
    BundleProblem,
    payload_resolver,
    read_bundle_dir,
    scan_bundles_dir,
)
from app.domain.manifest import normalize_manifest


def _manifest(graph_id: str = "demo_bundle", **worker_config: Any) -> dict[str, Any]:
    return {
        "manifest_version": "1.0",
        "graph_id": graph_id,
        "nodes": [
            {"node_id": "worker", "agent_type": "executor", "role": "root", "config": worker_config},
        ],
    }


def _bundle(root: Path, name: str, manifest: Any = None, *, payloads: bool = True) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    text = manifest if isinstance(manifest, str) else json.dumps(manifest or _manifest())
    (directory / "manifest.json").write_text(text, encoding="utf-8")
    if payloads:
        (directory / "payloads").mkdir()
    return directory


def _problem(result: BundleCandidate | BundleProblem) -> BundleProblem:
    assert isinstance(result, BundleProblem), result
    return result


def _candidate(result: BundleCandidate | BundleProblem) -> BundleCandidate:
    assert isinstance(result, BundleCandidate), result
    return result


# --- §5.7 messages -------------------------------------------------------------------------------


def test_missing_manifest_is_the_only_error_and_has_no_fingerprint(tmp_path: Path) -> None:
    directory = tmp_path / "empty"
    (directory / "payloads").mkdir(parents=True)

    problem = _problem(read_bundle_dir(directory))

    assert problem.errors == [f"job folder is missing manifest.json: {directory / 'manifest.json'}"]
    assert problem.fingerprint is None


def test_missing_payloads_is_the_only_error_and_keeps_the_fingerprint(tmp_path: Path) -> None:
    directory = _bundle(tmp_path, "no_payloads", {"not": "even valid"}, payloads=False)

    problem = _problem(read_bundle_dir(directory))

    assert problem.errors == [f"job folder is missing payloads/: {directory / 'payloads'}"]
    assert problem.fingerprint == fingerprint(directory)[0]


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("{", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        ("", "Expecting value: line 1 column 1 (char 0)"),
        ('{"a": NaN}', "NaN is not a valid JSON value"),
        ('{"a": -1e999}', "number out of range: -1e999"),
        ('{"a": [9007199254740993]}', "integer out of range: 9007199254740993"),  # SPEC C.1.2
        ('{"a": -123456789012345678901}', "integer out of range: -123456789012345678901"),
        ('{"a": "x\\u0000y"}', "NUL characters (\\u0000) are not supported"),
        ("[" * 513 + "]" * 513, "nesting deeper than 512 levels"),
        ("[" * 5000 + "]" * 5000, "nesting deeper than 512 levels"),
    ],
)
def test_invalid_json_is_the_only_error(tmp_path: Path, text: str, detail: str) -> None:
    directory = _bundle(tmp_path, "broken", text)

    problem = _problem(read_bundle_dir(directory))

    assert problem.errors == [f"manifest.json is not valid JSON: {detail}"]
    assert problem.fingerprint == fingerprint(directory)[0]


def test_manifest_bytes_that_are_not_utf8_are_invalid_json(tmp_path: Path) -> None:
    directory = _bundle(tmp_path, "latin1", "{}")
    (directory / "manifest.json").write_bytes(b'{"graph_id": "caf\xe9"}')

    problem = _problem(read_bundle_dir(directory))

    assert len(problem.errors) == 1
    assert problem.errors[0].startswith("manifest.json is not valid JSON: 'utf-8' codec can't decode")


@pytest.mark.parametrize("text", ["[1]", '"text"', "null", "42"])
def test_non_object_manifest_is_the_only_error(tmp_path: Path, text: str) -> None:
    directory = _bundle(tmp_path, "list", text)

    assert _problem(read_bundle_dir(directory)).errors == ["manifest.json must contain a JSON object"]


def test_manifest_validation_errors_are_reported_in_order(tmp_path: Path) -> None:
    directory = _bundle(tmp_path, "invalid", {"graph": {}, "agents": []})

    problem = _problem(read_bundle_dir(directory))

    assert problem.errors == [
        "manifest_version is required",
        "graph_id is required",
        "nodes must not be empty",
        "manifest must define at least one entrypoint or one node with role root/root_coordinator",
    ]
    assert problem.fingerprint == fingerprint(directory)[0]


def test_reload_reports_graph_id_mismatch_after_the_manifest_errors(tmp_path: Path) -> None:
    manifest = _manifest("renamed_bundle", timeout_seconds=0)
    directory = _bundle(tmp_path, "renamed", manifest)

    problem = _problem(read_bundle_dir(directory, expected_bundle_id="demo_bundle"))

    assert problem.errors == [
        "timeout_seconds must be a positive number for node worker",
        'graph_id "renamed_bundle" does not match bundle_id "demo_bundle"',
    ]


def test_reload_mismatch_renders_a_missing_graph_id_as_empty_text(tmp_path: Path) -> None:
    manifest = _manifest()
    del manifest["graph_id"]
    directory = _bundle(tmp_path, "anonymous", manifest)

    problem = _problem(read_bundle_dir(directory, expected_bundle_id="demo_bundle"))

    assert problem.errors == ["graph_id is required", 'graph_id "" does not match bundle_id "demo_bundle"']


def test_reload_with_matching_graph_id_is_accepted(tmp_path: Path) -> None:
    directory = _bundle(tmp_path, "same", _manifest("demo_bundle"))

    assert _candidate(read_bundle_dir(directory, expected_bundle_id="demo_bundle")).bundle_id == "demo_bundle"


# --- uploads against payloads/ ---------------------------------------------------------------------


def test_upload_escaping_through_a_symlink_is_outside_payloads(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("x")
    directory = _bundle(tmp_path / "bundles", "escape", _manifest(upload_path="escape"))
    (directory / "payloads" / "escape").symlink_to(outside, target_is_directory=True)

    problem = _problem(read_bundle_dir(directory))

    assert problem.errors == ["upload source escape for node worker must be inside payloads/"]


def test_absolute_upload_source_outside_payloads_is_rejected(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("x")
    directory = _bundle(tmp_path / "bundles", "absolute", _manifest(upload_path=str(outside)))

    problem = _problem(read_bundle_dir(directory))

    assert problem.errors == [f"upload source {outside} for node worker must be inside payloads/"]


def test_missing_upload_source_names_its_absolute_path(tmp_path: Path) -> None:
    directory = _bundle(tmp_path, "missing_source", _manifest(upload_paths=["scripts/run.sh"]))

    problem = _problem(read_bundle_dir(directory))

    expected = os.path.realpath(directory / "payloads") + "/scripts/run.sh"
    assert problem.errors == [f"upload source does not exist: {expected}"]


def test_relative_absolute_and_symlinked_sources_inside_payloads_are_accepted(tmp_path: Path) -> None:
    directory = _bundle(tmp_path, "ok", _manifest())
    payloads = directory / "payloads"
    (payloads / "tool").mkdir()
    (payloads / "tool" / "run.py").write_text("print(1)\n")
    (payloads / "alias").symlink_to(payloads / "tool", target_is_directory=True)
    manifest = _manifest(
        upload_paths=["tool", {"source": str(payloads / "tool" / "run.py"), "target": "bin/run.py"}],
        upload_path="alias/run.py",
    )
    (directory / "manifest.json").write_text(json.dumps(manifest))

    candidate = _candidate(read_bundle_dir(directory))

    assert candidate.payload_files == ["tool/run.py"]


def test_payload_resolver_reports_inside_absolute_path_and_existence(tmp_path: Path) -> None:
    payloads = tmp_path / "payloads"
    (payloads / "data").mkdir(parents=True)
    (payloads / "data" / "x.csv").write_text("1\n")
    resolve = payload_resolver(payloads)
    root = os.path.realpath(payloads)

    present = resolve("data/x.csv")
    absent = resolve("data/y.csv")
    outside = resolve("/etc")

    assert (present.inside, present.absolute_path, present.exists) == (True, f"{root}/data/x.csv", True)
    assert (absent.inside, absent.absolute_path, absent.exists) == (True, f"{root}/data/y.csv", False)
    assert outside.inside is False
    assert resolve(f"{root}-sibling/file").inside is False


# --- accepted candidates -----------------------------------------------------------------------------


def test_candidate_carries_manifests_fingerprint_and_payload_files(tmp_path: Path, monkeypatch: Any) -> None:
    raw = _manifest("demo_bundle", upload_path="scripts")
    directory = _bundle(tmp_path, "demo", raw)
    (directory / "payloads" / "scripts").mkdir()
    (directory / "payloads" / "scripts" / "run.sh").write_text("echo hi\n")
    monkeypatch.chdir(tmp_path)

    candidate = _candidate(read_bundle_dir(Path("demo")))

    assert candidate.path == str(directory)
    assert candidate.bundle_id == "demo_bundle"
    assert candidate.raw_manifest == raw
    assert candidate.manifest == normalize_manifest(raw)
    assert (candidate.fingerprint, candidate.payload_files) == fingerprint(directory)
    assert candidate.reload == {"mode": "manual", "interval_seconds": 60}


@pytest.mark.parametrize(
    ("manifest_reload", "mode", "interval", "expected"),
    [
        (
            {"mode": "interval", "interval_seconds": 5},
            None,
            None,
            {"mode": "interval", "interval_seconds": 5},
        ),
        (
            {"mode": "sometimes", "interval_seconds": -1},
            None,
            None,
            {"mode": "manual", "interval_seconds": 60},
        ),
        (
            {"mode": "manual", "interval_seconds": 5},
            "interval",
            None,
            {"mode": "interval", "interval_seconds": 5},
        ),
        (None, "interval", 30.0, {"mode": "interval", "interval_seconds": 30}),
        (None, None, 2.5, {"mode": "manual", "interval_seconds": 2.5}),
        ({"mode": "interval", "interval_seconds": 5}, "manual", 7, {"mode": "manual", "interval_seconds": 7}),
    ],
)
def test_effective_reload_applies_the_environment_overrides(
    tmp_path: Path,
    manifest_reload: Any,
    mode: str | None,
    interval: float | None,
    expected: dict[str, Any],
) -> None:
    raw = _manifest()
    if manifest_reload is not None:
        raw["reload"] = manifest_reload
    directory = _bundle(tmp_path, "reloading", raw)

    candidate = _candidate(
        read_bundle_dir(directory, reload_mode_override=mode, reload_interval_override=interval)
    )

    assert candidate.reload == expected


# --- scanning a bundles directory --------------------------------------------------------------------


def test_scan_reads_immediate_subdirectories_with_manifest_in_name_order(tmp_path: Path) -> None:
    _bundle(tmp_path, "b_second", _manifest("second"))
    _bundle(tmp_path, "a_first", _manifest("first"))
    _bundle(tmp_path, "C_upper", _manifest("upper"))
    (tmp_path / "not_a_bundle").mkdir()
    (tmp_path / "loose_file.json").write_text("{}")
    _bundle(tmp_path / "group", "nested", _manifest("too_deep"))

    candidates, log_lines = scan_bundles_dir(tmp_path)

    assert [candidate.bundle_id for candidate in candidates] == ["upper", "first", "second"]
    assert log_lines == []


def test_scan_logs_and_skips_invalid_bundles(tmp_path: Path) -> None:
    _bundle(tmp_path, "good", _manifest("good"))
    no_payloads = _bundle(tmp_path, "no_payloads", _manifest("no_payloads"), payloads=False)
    bad = _bundle(tmp_path, "bad", {"manifest_version": "1.0", "graph_id": "bad id", "nodes": []})

    candidates, log_lines = scan_bundles_dir(tmp_path)

    assert [candidate.bundle_id for candidate in candidates] == ["good"]
    graph_id_message = (
        "graph_id must be a non-empty string of at most 128 characters using only letters, digits,"
        ' "_", "." and "-"'
    )
    assert log_lines == [
        f"skipping bundle directory {bad}: {graph_id_message}; nodes must not be empty;"
        " manifest must define at least one entrypoint or one node with role root/root_coordinator",
        f"skipping bundle directory {no_payloads}: job folder is missing payloads/: {no_payloads / 'payloads'}",
    ]


def test_scan_keeps_the_first_directory_of_a_duplicate_graph_id(tmp_path: Path) -> None:
    first = _bundle(tmp_path, "alpha", _manifest("shared"))
    second = _bundle(tmp_path, "beta", _manifest("shared"))

    candidates, log_lines = scan_bundles_dir(tmp_path)

    assert [(candidate.bundle_id, candidate.path) for candidate in candidates] == [("shared", str(first))]
    assert log_lines == [
        f'skipping bundle directory {second}: graph_id "shared" is already provided by {first}'
    ]


def test_scan_passes_the_reload_overrides_to_every_bundle(tmp_path: Path) -> None:
    _bundle(tmp_path, "one", _manifest("one"))
    _bundle(tmp_path, "two", _manifest("two"))

    candidates, _ = scan_bundles_dir(tmp_path, reload_mode_override="interval", reload_interval_override=15)

    assert [candidate.reload for candidate in candidates] == [
        {"mode": "interval", "interval_seconds": 15}
    ] * 2


def test_scan_of_a_missing_directory_logs_it(tmp_path: Path) -> None:
    assert scan_bundles_dir(tmp_path / "absent") == (
        [],
        [f"bundles directory does not exist: {tmp_path / 'absent'}"],
    )
