"""Reading bundle directories from disk (SPEC §9.1–§9.2, §9.5 step 3, §5.7); no database."""

from __future__ import annotations

import json
import math
import os
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from app.bundles.fingerprint import MANIFEST_NAME, PAYLOADS_NAME, fingerprint_of
from app.domain.json_limits import parse_strict
from app.domain.manifest import UploadCheck, normalize_manifest, validate_manifest

RELOAD_MODES = ("manual", "interval")
DEFAULT_RELOAD_MODE = "manual"
DEFAULT_RELOAD_INTERVAL_SECONDS = 60


@dataclass(frozen=True, slots=True)
class BundleCandidate:
    """A bundle directory whose manifest passed validation, ready to register or reload."""

    path: str
    bundle_id: str
    raw_manifest: dict[str, Any]
    manifest: dict[str, Any]
    fingerprint: str
    payload_files: list[str]
    reload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BundleProblem:
    """A bundle directory that cannot be accepted, with the §5.7/§5.6 messages in order."""

    errors: list[str]
    fingerprint: str | None


def read_bundle_dir(
    path: Path,
    *,
    expected_bundle_id: str | None = None,
    reload_mode_override: str | None = None,
    reload_interval_override: float | None = None,
) -> BundleCandidate | BundleProblem:
    """Load, fingerprint and validate one bundle directory.

    With `expected_bundle_id` (a reload) the manifest's graph_id must equal it. The overrides are
    MIRROR_NEURON_BUNDLE_RELOAD_MODE / _INTERVAL_SECONDS when set.
    """
    bundle_dir = Path(os.path.abspath(path))
    manifest_path = bundle_dir / MANIFEST_NAME
    payloads_dir = bundle_dir / PAYLOADS_NAME
    if not manifest_path.is_file():
        return BundleProblem([f"job folder is missing manifest.json: {manifest_path}"], None)
    try:
        manifest_bytes = manifest_path.read_bytes()
    except OSError as exc:
        return BundleProblem([f"manifest.json is not valid JSON: {exc.strerror or exc}"], None)
    digest, payload_files = fingerprint_of(manifest_bytes, payloads_dir)
    if not payloads_dir.is_dir():
        return BundleProblem([f"job folder is missing payloads/: {payloads_dir}"], digest)
    raw, errors = check_manifest(manifest_bytes, payload_resolver(payloads_dir), expected_bundle_id)
    if raw is None or errors:
        return BundleProblem(errors, digest)
    manifest = normalize_manifest(raw)
    return BundleCandidate(
        path=str(bundle_dir),
        bundle_id=manifest["graph_id"],
        raw_manifest=raw,
        manifest=manifest,
        fingerprint=digest,
        payload_files=payload_files,
        reload=effective_reload(manifest.get("reload"), reload_mode_override, reload_interval_override),
    )


def check_manifest(
    manifest_bytes: bytes, resolve_upload: Callable[[str], UploadCheck], expected_bundle_id: str | None = None
) -> tuple[dict[str, Any] | None, list[str]]:
    """The raw manifest and its §5.7/§5.6 errors, as every bundle (scanned or uploaded) is judged.

    With `expected_bundle_id` (a reload) the manifest's graph_id must equal it.
    """
    raw = _parse_manifest(manifest_bytes)
    if isinstance(raw, str):
        return None, [raw]
    errors = validate_manifest(raw, has_bundle=True, resolve_upload=resolve_upload)
    if expected_bundle_id is not None and raw.get("graph_id") != expected_bundle_id:
        errors.append(
            f'graph_id "{_render(raw.get("graph_id"))}" does not match bundle_id "{expected_bundle_id}"'
        )
    return raw, errors


def find_bundle_dir(root: Path, bundle_id: str) -> Path | None:
    """The first bundle directory under `root` (name order, §9.2) whose manifest's graph_id is `bundle_id`."""
    if not root.is_dir():
        return None
    for directory in _bundle_dirs(root):
        if manifest_graph_id(directory) == bundle_id:
            return directory
    return None


def manifest_graph_id(directory: Path) -> object:
    """The graph_id a directory's manifest.json names, or None when it cannot be read as an object."""
    try:
        raw = _parse_manifest((directory / MANIFEST_NAME).read_bytes())
    except OSError:
        return None
    return raw.get("graph_id") if isinstance(raw, dict) else None


def bundle_dirs(root: Path) -> list[Path]:
    """The immediate subdirectories of `root` holding manifest.json, in name order (§9.2)."""
    return _bundle_dirs(root) if root.is_dir() else []


def scan_bundles_dir(
    root: Path,
    *,
    reload_mode_override: str | None = None,
    reload_interval_override: float | None = None,
    registered: frozenset[str] = frozenset(),
) -> tuple[list[BundleCandidate], list[str]]:
    """Return the accepted bundles under `root` (§9.2) and one warning line per skipped directory.

    Immediate subdirectories containing manifest.json are read in ascending name order; the first
    directory to claim a graph_id wins. Directories whose manifest names a `registered` graph_id
    are passed over unread (the interval scanner looks only for new bundles, SPEC C.2.5).
    """
    if not root.is_dir():
        return [], [f"bundles directory does not exist: {os.path.abspath(root)}"]
    accepted: dict[str, BundleCandidate] = {}
    log_lines: list[str] = []
    for directory in _bundle_dirs(root):
        if registered and manifest_graph_id(directory) in registered:
            continue
        found = read_bundle_dir(
            directory,
            reload_mode_override=reload_mode_override,
            reload_interval_override=reload_interval_override,
        )
        where = os.path.abspath(directory)
        if isinstance(found, BundleProblem):
            log_lines.append(f"skipping bundle directory {where}: {'; '.join(found.errors)}")
        elif found.bundle_id in accepted:
            first = accepted[found.bundle_id].path
            log_lines.append(
                f'skipping bundle directory {where}: graph_id "{found.bundle_id}" is already provided by {first}'
            )
        else:
            accepted[found.bundle_id] = found
    return list(accepted.values()), log_lines


def payload_resolver(payloads_dir: Path) -> Callable[[str], UploadCheck]:
    """Return the upload-source check of §5.6 rules 7.4 and 7.6 for one bundle's payloads/.

    Relative sources resolve against payloads/, absolute ones are taken as given; symlinks are
    followed, and the result counts as inside when it is payloads/ itself or lies below it.
    """
    root = os.path.realpath(payloads_dir)

    def resolve(source: str) -> UploadCheck:
        resolved = os.path.realpath(os.path.join(root, source))
        inside = resolved == root or resolved.startswith(root.rstrip(os.sep) + os.sep)
        return UploadCheck(inside=inside, absolute_path=resolved, exists=os.path.exists(resolved))

    return resolve


def listed_payload_resolver(payload_files: list[str], shown_root: str) -> Callable[[str], UploadCheck]:
    """The §5.6 rule 7.4/7.6 check for an uploaded version, from its archive's payload file list.

    A relative source is inside unless it climbs out; it exists when it is payloads/ itself, a
    listed file, or a directory holding one. An absolute source names no file of an archive, so it
    is outside. Paths in messages start at `shown_root` (an entry path or `upload:<id>@<fp>/payloads`).
    """
    files = frozenset(payload_files)
    directories = {posixpath.dirname(f) for f in payload_files}
    directories |= {d for path in list(directories) for d in _ancestors(path)}

    def resolve(source: str) -> UploadCheck:
        if source.startswith("/"):
            return UploadCheck(inside=False, absolute_path=source, exists=False)
        relative = posixpath.normpath(source)
        inside = relative != ".." and not relative.startswith("../")
        exists = relative == "." or relative in files or relative in directories
        shown = shown_root if relative == "." else f"{shown_root}/{relative}"
        return UploadCheck(inside=inside, absolute_path=shown, exists=exists)

    return resolve


def _ancestors(path: str) -> Iterator[str]:
    while path:
        path = posixpath.dirname(path)
        if path:
            yield path


def effective_reload(
    manifest_reload: object,
    mode_override: str | None,
    interval_override: float | None,
) -> dict[str, Any]:
    """Return {"mode", "interval_seconds"}: the manifest's values (defaults when invalid), then overrides."""
    given = manifest_reload if isinstance(manifest_reload, dict) else {}
    mode = mode_override if mode_override in RELOAD_MODES else given.get("mode")
    interval = interval_override if _positive_seconds(interval_override) else given.get("interval_seconds")
    return {
        "mode": mode if mode in RELOAD_MODES else DEFAULT_RELOAD_MODE,
        "interval_seconds": _whole(interval)
        if _positive_seconds(interval)
        else DEFAULT_RELOAD_INTERVAL_SECONDS,
    }


def _positive_seconds(value: object) -> TypeGuard[int | float]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value > 0


def _whole(seconds: int | float) -> int | float:
    return int(seconds) if isinstance(seconds, float) and seconds.is_integer() else seconds


def _bundle_dirs(root: Path) -> list[Path]:
    found = [entry for entry in root.iterdir() if entry.is_dir() and (entry / MANIFEST_NAME).exists()]
    return sorted(found, key=lambda entry: entry.name.encode("utf-8", "surrogateescape"))


def _parse_manifest(data: bytes) -> dict[str, Any] | str:
    """Return the manifest object, or the one §5.7 message explaining why there is none."""
    # The same parser and limits as request bodies (SPEC Appendix B.3–B.4): the manifest ends up in events.
    try:
        value = parse_strict(data)
    except ValueError as exc:
        return f"manifest.json is not valid JSON: {exc}"
    if not isinstance(value, dict):
        return "manifest.json must contain a JSON object"
    return value


def _render(value: object) -> str:
    # §5.6 placeholder rendering: a string as is, null/missing as empty text, anything else as JSON.
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
