"""Bundle fingerprints (SPEC §9.3): one SHA-256 over manifest.json and the payload files."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

MANIFEST_NAME = "manifest.json"
PAYLOADS_NAME = "payloads"

_CHUNK_BYTES = 1 << 20


def fingerprint(bundle_dir: Path) -> tuple[str, list[str]]:
    """Return the lower-case hex §9.3 digest of a bundle directory and the payload paths it hashed.

    Raises OSError when manifest.json itself cannot be read.
    """
    manifest_bytes = (bundle_dir / MANIFEST_NAME).read_bytes()
    return fingerprint_of(manifest_bytes, bundle_dir / PAYLOADS_NAME)


def fingerprint_of(manifest_bytes: bytes, payloads_dir: Path) -> tuple[str, list[str]]:
    """Return the §9.3 digest for manifest.json bytes already read and the payloads directory.

    Lets a caller parse and hash the very same manifest bytes; a missing payloads directory
    contributes nothing.
    """
    digest = hashlib.sha256()
    digest.update(MANIFEST_NAME.encode("ascii"))
    digest.update(manifest_bytes)
    payload_files = payload_file_paths(payloads_dir)
    for relative in payload_files:
        digest.update(_path_bytes(relative))
        digest = _with_file_bytes(digest, payloads_dir / relative)
    return digest.hexdigest(), payload_files


def payload_file_paths(payloads_dir: Path) -> list[str]:
    """Return the relative POSIX paths of the hashed payload files, in UTF-8 byte order.

    Regular files only (a symlink counts when it points at a regular file); no path component may
    start with "."; symlinked directories are not entered, so a link cycle cannot loop.
    """
    found: list[str] = []
    for current, dirnames, filenames in os.walk(payloads_dir):
        dirnames[:] = [name for name in dirnames if not name.startswith(".")]
        base = Path(current).relative_to(payloads_dir)
        for name in filenames:
            if name.startswith(".") or not _is_regular_file(Path(current, name)):
                continue
            found.append((base / name).as_posix())
    found.sort(key=_path_bytes)
    return found


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _path_bytes(relative: str) -> bytes:
    # surrogateescape gives back the on-disk bytes of names that are not valid UTF-8.
    return relative.encode("utf-8", "surrogateescape")


def _with_file_bytes(digest: hashlib._Hash, path: Path) -> hashlib._Hash:
    # A file that cannot be read contributes only its path: hash into a copy and keep the
    # original when reading fails part-way, so no partial content leaks into the digest.
    attempt = digest.copy()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK_BYTES):
                attempt.update(chunk)
    except OSError:
        return digest
    return attempt
