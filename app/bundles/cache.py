"""The node's cache of uploaded bundle versions under MIRROR_NEURON_TEMP_DIR (SPEC C.2.3); no database.

`<temp_dir>/mirror_neuron_bundles/<fingerprint>/` holds one version (manifest.json, payloads/).
A version appears there only whole: it is extracted into a private directory beside it and
renamed into place, so a reader sees either nothing or the complete version, and of two
processes extracting the same version at once the second rename fails and its copy is dropped.

The cache is bounded (`MIRROR_NEURON_BUNDLE_CACHE_MAX_BYTES`): `evict` removes the least recently
used versions past the cap, never one the database still needs (a bundle's current version, a
version an unfinished job runs) nor one used in the last `SPARE_USED_WITHIN_SECONDS`. A version is
"used" when `is_cached` finds it (every bootstrap and executor attempt asks), which touches it.
Eviction and that touch are kept apart by a lock file beside the cache: `evict` re-reads a
candidate's last use and renames it out of the way under an exclusive lock, `is_cached` touches
under a shared one, so a version a job has just been told is present cannot disappear behind it;
one evicted a moment earlier is simply materialised again. `sweep_leftovers` removes what a crash
left half-done.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import shutil
import time
from collections.abc import Collection, Iterator, MutableMapping
from pathlib import Path
from typing import Any

from app.bundles.archive import extract_stored, parse_upload_path

CACHE_DIR_NAME = "mirror_neuron_bundles"
# Directories that are not versions: an upload being judged, an extraction in progress, an evicted
# version being deleted. A process that dies leaves them; the sweep removes them once this old.
LEFTOVER_PREFIXES = (".upload-", ".partial-", ".evict-")
LEFTOVER_AGE_SECONDS = 3600.0
SPARE_USED_WITHIN_SECONDS = 600.0
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


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
    """True when the version is materialised here; it then stays at least SPARE_USED_WITHIN_SECONDS."""
    root = cache_root(temp_dir)
    if not root.is_dir():
        return False
    with _locked(root, fcntl.LOCK_SH):
        try:
            os.utime(root / fingerprint)
        except FileNotFoundError:
            return False
        return (root / fingerprint).is_dir()


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


# ------------------------------------------------------------------ bounds


def evict(
    temp_dir: Path,
    keep: Collection[str],
    max_bytes: int,
    *,
    spare_seconds: float = SPARE_USED_WITHIN_SECONDS,
    sizes: MutableMapping[str, int] | None = None,
) -> list[str]:
    """Remove least recently used versions until the cache holds at most `max_bytes`; returns them.

    Never removes a version in `keep` or one used within `spare_seconds`, even past the cap.
    `sizes` memoises each version's bytes (a version never changes).
    """
    root = cache_root(temp_dir)
    if not root.is_dir():
        return []
    sizes = {} if sizes is None else sizes
    versions = _versions(root)
    for fingerprint in versions:
        if fingerprint not in sizes:
            sizes[fingerprint] = _bytes_under(root / fingerprint)
    total = sum(sizes[fp] for fp in versions)
    candidates = sorted((used, fp) for fp, used in versions.items() if fp not in keep)
    doomed: list[tuple[str, Path]] = []
    with _locked(root, fcntl.LOCK_EX):
        for _, fingerprint in candidates:
            if total <= max_bytes:
                break
            away = _take_away(root, fingerprint, spare_seconds)
            if away is not None:
                total -= sizes.pop(fingerprint)
                doomed.append((fingerprint, away))
    for _, away in doomed:
        shutil.rmtree(away, ignore_errors=True)
    return [fingerprint for fingerprint, _ in doomed]


def _take_away(root: Path, fingerprint: str, spare_seconds: float) -> Path | None:
    """Rename an unused version out of the cache (under the exclusive lock); None if used lately."""
    path = root / fingerprint
    try:
        if time.time() - path.stat().st_mtime < spare_seconds:
            return None
        away = root / f".evict-{fingerprint[:16]}-{secrets.token_hex(6)}"
        os.rename(path, away)
    except FileNotFoundError:
        return None
    return away


def sweep_leftovers(temp_dir: Path, *, older_than: float = LEFTOVER_AGE_SECONDS) -> list[str]:
    """Remove `.upload-*`, `.partial-*` and `.evict-*` directories untouched for `older_than` seconds."""
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


def _versions(root: Path) -> dict[str, float]:
    """Every cached version with its last use (the directory's mtime)."""
    found = {}
    for entry in os.scandir(root):
        if _FINGERPRINT.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                found[entry.name] = entry.stat(follow_symlinks=False).st_mtime
    return found


def _bytes_under(path: Path) -> int:
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total


@contextlib.contextmanager
def _locked(root: Path, mode: int) -> Iterator[None]:
    """The cache's lock file, shared (a use) or exclusive (an eviction), across processes."""
    fd = os.open(root.with_name(root.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)
