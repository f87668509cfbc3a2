"""An uploaded bundle judged exactly as a scanned one (SPEC C.2.1, C.5.1): extract, fingerprint, validate."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, ParamSpec

from app.bundles.archive import build_archive, extract_upload, shown_payload_root, upload_path
from app.bundles.fingerprint import MANIFEST_NAME, PAYLOADS_NAME, fingerprint_of
from app.bundles.scanner import (
    BundleCandidate,
    BundleProblem,
    check_manifest,
    effective_reload,
    listed_payload_resolver,
)
from app.domain.manifest import normalize_manifest

_P = ParamSpec("_P")


@dataclass(frozen=True)
class UploadedBundle:
    """An accepted upload: the version to register, its stored archive, and where it was extracted."""

    candidate: BundleCandidate
    archive: bytes
    expanded_bytes: int
    extracted: Path


def read_upload(
    source: IO[bytes],
    work_dir: Path,
    *,
    max_bytes: int,
    reload_mode_override: str | None = None,
    reload_interval_override: float | None = None,
) -> UploadedBundle | BundleProblem:
    """Judge an uploaded zip; raises ArchiveRefused for an archive that is refused outright.

    The bundle is extracted into a new directory under `work_dir`, removed again unless the
    upload is accepted (the caller then owns it). Messages name entry paths, never server paths.
    """
    target = work_dir / f".upload-{secrets.token_hex(8)}"
    try:
        judged = _judge(source, target, max_bytes, reload_mode_override, reload_interval_override)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    if isinstance(judged, BundleProblem):
        shutil.rmtree(target, ignore_errors=True)
    return judged


async def in_thread(
    judge: Callable[_P, UploadedBundle | BundleProblem], *args: _P.args, **kwargs: _P.kwargs
) -> UploadedBundle | BundleProblem:
    """`asyncio.to_thread(judge, ...)` for `read_upload`, except that an extraction nobody waits for is removed.

    Cancelling the awaiting task (a client that hangs up, a server that shuts down) does not stop
    the thread: it runs on and may still accept the bundle, with nobody left to adopt or remove
    its directory. So the thread's future is shielded, and on cancellation a callback removes
    whatever the thread extracted once it is done. (A crash meanwhile is what the sweep of
    app/bundles/cache.py is for.)
    """
    work = asyncio.ensure_future(asyncio.to_thread(judge, *args, **kwargs))
    try:
        return await asyncio.shield(work)
    except BaseException:
        if not work.done():
            work.add_done_callback(_discard_abandoned)
        raise


def _discard_abandoned(work: asyncio.Future[UploadedBundle | BundleProblem]) -> None:
    """Remove an extraction accepted after its caller was gone (the thread removed any other)."""
    if work.cancelled() or work.exception() is not None:
        return
    judged = work.result()
    if not isinstance(judged, UploadedBundle):
        return
    try:
        asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, judged.extracted, True)
    except RuntimeError:  # the loop is closing: its executor takes no more work
        shutil.rmtree(judged.extracted, ignore_errors=True)


def _judge(
    source: IO[bytes], target: Path, max_bytes: int, mode: str | None, interval: float | None
) -> UploadedBundle | BundleProblem:
    extracted = extract_upload(source, target, max_bytes)
    shown_payloads = shown_payload_root(extracted.prefix)
    manifest_bytes = (target / MANIFEST_NAME).read_bytes()
    digest, payload_files = fingerprint_of(manifest_bytes, target / PAYLOADS_NAME)
    if not extracted.has_payloads:
        return BundleProblem([f"job folder is missing payloads/: {shown_payloads}"], digest)
    raw, errors = check_manifest(manifest_bytes, listed_payload_resolver(payload_files, shown_payloads))
    if raw is None or errors:
        return BundleProblem(errors, digest)
    manifest = normalize_manifest(raw)
    bundle_id = manifest["graph_id"]
    candidate = BundleCandidate(
        path=upload_path(bundle_id, digest),
        bundle_id=bundle_id,
        raw_manifest=raw,
        manifest=manifest,
        fingerprint=digest,
        payload_files=payload_files,
        reload=effective_reload(manifest.get("reload"), mode, interval),
    )
    expanded = len(manifest_bytes) + sum((target / PAYLOADS_NAME / p).stat().st_size for p in payload_files)
    return UploadedBundle(candidate, build_archive(target, payload_files), expanded, target)
