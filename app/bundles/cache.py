"""The node's cache of uploaded bundle versions under MIRROR_NEURON_TEMP_DIR (SPEC C.2.3); no database.

`<temp_dir>/mirror_neuron_bundles/<fingerprint>/` holds one version (manifest.json, payloads/).
A version appears there only whole: it is extracted into a private directory beside it and
renamed into place, so a reader sees either nothing or the complete version, and of two
processes extracting the same version at once the second rename fails and its copy is dropped.
`sweep_leftovers` removes what a crash left half-done.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from app.bundles.archive import extract_stored, parse_upload_path

CACHE_DIR_NAME = "mirror_neuron_bundles"
# Directories that are not versions: an upload being judged, an extraction in progress. A process
# that dies leaves them; the sweep removes them once this old.
LEFTOVER_PREFIXES = (".upload-", ".partial-")
LEFTOVER_AGE_SECONDS = 3600.0


def cache_root(temp_dir: Path) -> Path:
    """The directory holding every cached version (and uploads being judged)."""
    return Path(temp_dir) / CACHE_DIR_NAME


def cached_version(temp_dir: Path, fingerprint: str) -> Path:
    """Where a version with this fingerprint is (or will be) materialised."""
    return cache_root(temp_dir) / fingerprint


def local_bundle_dir(bundle: dict[str, Any], temp_dir: Path) -> str:
    """The directory a job's bundle is read from on this node: its path, or its cached upload."""
    upload = parse_upload_path(bundle["path"])
    return str(bundle["path"]) if upload is None else str(cached_version(temp_dir, upload[1]))


def is_cached(temp_dir: Path, fingerprint: str) -> bool:
    """True when the version is materialised here."""
    return cached_version(temp_dir, fingerprint).is_dir()


def adopt(extracted: Path, temp_dir: Path, fingerprint: str) -> Path:
    """Move a complete extraction into the cache as `fingerprint` (dropped if already there)."""
    final = cached_version(temp_dir, fingerprint)
    try:
        os.rename(extracted, final)
    except OSError as exc:
        shutil.rmtree(extracted, ignore_errors=True)
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not final.is_dir():
            raise
    return final


def materialise(data: bytes, temp_dir: Path, fingerprint: str, max_bytes: int) -> Path:
    """Extract a stored archive into the cache as `fingerprint`, atomically."""
    root = cache_root(temp_dir)
    root.mkdir(parents=True, exist_ok=True)
    partial = root / f".partial-{fingerprint[:16]}-{secrets.token_hex(6)}"
    try:
        extract_stored(data, partial, max_bytes)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return adopt(partial, temp_dir, fingerprint)


def sweep_leftovers(temp_dir: Path, *, older_than: float = LEFTOVER_AGE_SECONDS) -> list[str]:
    """Remove `.upload-*` and `.partial-*` directories untouched for `older_than` seconds."""
    root = cache_root(temp_dir)
    if not root.is_dir():
        return []
    removed = []
    now = time.time()
    for entry in os.scandir(root):
        if not entry.name.startswith(LEFTOVER_PREFIXES):
            continue
        with contextlib.suppress(FileNotFoundError):
            if now - entry.stat(follow_symlinks=False).st_mtime >= older_than:
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry.name)
    return removed
