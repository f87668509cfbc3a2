"""Bundle zip archives (SPEC C.2, C.5.1–C.5.3): an uploaded zip read safely, the stored archive, its extraction.

No database. Every entry name is checked before anything is written; extraction writes only the
files §9.3 fingerprints (`manifest.json` and the payload files), each with mode 0644 or 0755, and
counts the bytes it inflates, so an archive that expands past the cap stops there.
"""

from __future__ import annotations

import io
import os
import posixpath
import re
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from app.bundles.fingerprint import MANIFEST_NAME, PAYLOADS_NAME
from app.domain.bundle import UPLOAD_PATH_PREFIX

MAX_ENTRIES = 10_000
IGNORED_TOP_LEVEL = "__MACOSX"
NOT_A_ZIP = "bundle is not a zip archive"
NO_MANIFEST = "bundle must hold manifest.json at its root or in its one top-level directory"
_CHUNK_BYTES = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")
_MODE_FILE = 0o644
_MODE_EXECUTABLE = 0o755


class ArchiveRefused(Exception):
    """The archive cannot be accepted; the message is the C.5.1 sentence (400)."""


@dataclass(frozen=True)
class Extracted:
    """What an upload's extraction found: the entry prefix of the bundle root and whether payloads/ exists."""

    prefix: str
    has_payloads: bool


def upload_path(bundle_id: str, fingerprint: str) -> str:
    """`upload:<bundle_id>@<fingerprint>`: the path of an uploaded version (C.2.2)."""
    return f"{UPLOAD_PATH_PREFIX}{bundle_id}@{fingerprint}"


def parse_upload_path(path: object) -> tuple[str, str] | None:
    """(bundle_id, fingerprint) of an `upload:<id>@<fp>` path, else None."""
    if not isinstance(path, str) or not path.startswith(UPLOAD_PATH_PREFIX):
        return None
    bundle_id, at, fingerprint = path[len(UPLOAD_PATH_PREFIX):].rpartition("@")
    if not at or not bundle_id or not re.fullmatch(r"[0-9a-f]{64}", fingerprint):
        return None
    return bundle_id, fingerprint


def is_upload_path(path: object) -> bool:
    """True for the path of an uploaded version."""
    return parse_upload_path(path) is not None


def extract_upload(source: IO[bytes], target: Path, max_bytes: int) -> Extracted:
    """Extract the bundle held by an uploaded zip into `target` (created here).

    Raises ArchiveRefused with the C.5.1 sentence; `target` may then hold part of the bundle and
    is the caller's to remove. Nothing is written outside `target`.
    """
    with _open_zip(source) as archive:
        entries = _checked_entries(archive, max_bytes)
        prefix = _bundle_root(entries)
        target.mkdir(parents=True)
        has_payloads = False
        budget = _Budget(max_bytes)
        for info, parts in entries:
            relative = _relative(parts, prefix)
            if relative is None:
                continue
            if relative[0] == PAYLOADS_NAME and (len(relative) > 1 or info.is_dir()):
                has_payloads = True
                (target / PAYLOADS_NAME).mkdir(exist_ok=True)
            if not info.is_dir() and _fingerprinted(relative):
                _extract_file(archive, info, target.joinpath(*relative), budget)
        return Extracted(prefix="".join(f"{p}/" for p in prefix), has_payloads=has_payloads)


def build_archive(bundle_dir: Path, payload_files: list[str]) -> bytes:
    """The stored archive (C.5.2): manifest.json and the fingerprinted payload files, deflated, with modes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in [MANIFEST_NAME, *(f"{PAYLOADS_NAME}/{p}" for p in payload_files)]:
            path = bundle_dir / name
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix: the mode below is read back on extraction
            executable = path.stat().st_mode & 0o111
            info.external_attr = (stat.S_IFREG | (_MODE_EXECUTABLE if executable else _MODE_FILE)) << 16
            with path.open("rb") as handle, archive.open(info, "w") as out:
                while chunk := handle.read(_CHUNK_BYTES):
                    out.write(chunk)
    return buffer.getvalue()


def extract_stored(data: bytes, target: Path, max_bytes: int) -> None:
    """Materialise a stored archive into `target` (created here): manifest.json and payloads/."""
    extract_upload(io.BytesIO(data), target, max_bytes)
    (target / PAYLOADS_NAME).mkdir(exist_ok=True)


# ------------------------------------------------------------------ entries


Entry = tuple[zipfile.ZipInfo, tuple[str, ...]]


def _open_zip(source: IO[bytes]) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError):
        raise ArchiveRefused(NOT_A_ZIP) from None


def _checked_entries(archive: zipfile.ZipFile, max_bytes: int) -> list[Entry]:
    """Every entry with its path components, after the name, type, count and declared-size checks."""
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        raise ArchiveRefused(f"bundle has more than {MAX_ENTRIES} entries")
    entries = [(info, _checked_name(info)) for info in infos]
    # The sizes the archive declares: an honest zip bomb is refused before anything is inflated.
    # A dishonest one is cut at its declared size by zipfile (then fails its CRC) and is also
    # counted as it inflates (see _Budget).
    if sum(info.file_size for info in infos) > max_bytes:
        raise ArchiveRefused(_too_big(max_bytes))
    return entries


def _checked_name(info: zipfile.ZipInfo) -> tuple[str, ...]:
    name = info.filename
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise ArchiveRefused(f'bundle entry "{name}" is an absolute path')
    parts = tuple(p for p in re.split(r"[/\\]", name) if p not in ("", "."))
    if ".." in parts:
        raise ArchiveRefused(f'bundle entry "{name}" has a ".." component')
    kind = stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0
    if kind == stat.S_IFLNK:
        raise ArchiveRefused(f'bundle entry "{name}" is a symbolic link')
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise ArchiveRefused(f'bundle entry "{name}" is not a regular file or directory')
    return parts


def _bundle_root(entries: list[Entry]) -> tuple[str, ...]:
    """The components of the directory holding manifest.json: the root, or the one top-level directory."""
    kept = [(info, parts) for info, parts in entries if parts and parts[0] != IGNORED_TOP_LEVEL]
    files = {parts for info, parts in kept if not info.is_dir()}
    if (MANIFEST_NAME,) in files:
        return ()
    tops = {parts[0] for _, parts in kept}
    if len(tops) == 1:
        (top,) = tops
        if (top, MANIFEST_NAME) in files:
            return (top,)
    raise ArchiveRefused(NO_MANIFEST)


def _relative(parts: tuple[str, ...], prefix: tuple[str, ...]) -> tuple[str, ...] | None:
    if len(parts) <= len(prefix) or parts[: len(prefix)] != prefix:
        return None
    return parts[len(prefix):]


def _fingerprinted(relative: tuple[str, ...]) -> bool:
    """manifest.json, or a payload file with no path component starting with "." (SPEC §9.3)."""
    if relative == (MANIFEST_NAME,):
        return True
    return len(relative) > 1 and relative[0] == PAYLOADS_NAME and not any(p.startswith(".") for p in relative[1:])


# ------------------------------------------------------------------ extraction


class _Budget:
    """The uncompressed bytes still allowed; refuses the archive the moment they run out."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.left = max_bytes

    def spend(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise ArchiveRefused(_too_big(self.max_bytes))


def _too_big(max_bytes: int) -> str:
    return f"bundle expands to more than {max_bytes} bytes"


def _extract_file(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, budget: _Budget) -> None:
    executable = info.create_system == 3 and (info.external_attr >> 16) & 0o111
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            for chunk in _inflate(archive, info):
                budget.spend(len(chunk))
                out.write(chunk)
    except (NotADirectoryError, IsADirectoryError, FileExistsError):
        raise ArchiveRefused(f'bundle entry "{info.filename}" conflicts with another entry') from None
    os.chmod(path, _MODE_EXECUTABLE if executable else _MODE_FILE)


def _inflate(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    try:
        with archive.open(info) as handle:
            while chunk := handle.read(_CHUNK_BYTES):
                yield chunk
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError):
        raise ArchiveRefused(NOT_A_ZIP) from None
    except (NotImplementedError, RuntimeError) as exc:  # an unsupported method, an encrypted entry
        raise ArchiveRefused(f'bundle entry "{info.filename}" cannot be read: {exc}') from None


def shown_payload_root(prefix: str) -> str:
    """How messages name an upload's payloads/ directory: its entry path, never a server path."""
    return posixpath.join(prefix, PAYLOADS_NAME) if prefix else PAYLOADS_NAME
