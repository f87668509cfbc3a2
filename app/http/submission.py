"""A `POST /jobs` body turned into a submission, in the processing order of SPEC §2.7 (steps 3–10)."""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.bundles.archive import is_upload_path, parse_upload_path
from app.bundles.fingerprint import PAYLOADS_NAME
from app.bundles.scanner import listed_payload_resolver, payload_resolver
from app.domain.canonical import sha256_hex
from app.domain.manifest import normalize_manifest, validate_manifest
from app.http.body import PARSE_IN_THREAD_BYTES
from app.http.context import Api
from app.http.errors import ApiError, bundle_not_found
from app.http.json_text import canonical_text
from app.service import IdempotencyMismatch, Submitted
from app.store import archives, read_model

EMPTY_PAYLOAD = "Empty JSON payload"
BAD_IDEMPOTENCY_KEY = "Idempotency-Key must be 1 to 255 visible ASCII characters"
BUNDLE_FIELDS = frozenset({"bundle_id", "initial_inputs"})
UPLOADED_FIELDS = frozenset({"_bundle_path", "initial_inputs"})


@dataclass(frozen=True)
class JobRequest:
    """A validated submission: the normalised manifest and, for bundle jobs, the bundle reference."""

    manifest: dict[str, Any]
    bundle: dict[str, Any] | None


def check_idempotency_key(key: str | None) -> str | None:
    """The key when it is 1–255 characters in 0x21–0x7E; 400 otherwise."""
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not all("\x21" <= c <= "\x7e" for c in key):
        raise ApiError(400, BAD_IDEMPOTENCY_KEY)
    return key


def key_conflict(key: str) -> ApiError:
    """409 for a key used before with a different body."""
    return ApiError(409, f"Idempotency-Key {key} was already used with a different request body")


def _invalid(errors: list[str]) -> ApiError:
    return ApiError(400, "Manifest validation failed", errors=errors)


def raw_manifest_request(body: dict[str, Any]) -> JobRequest:
    """Step 9 for a raw manifest: validate (no bundle, so no upload sources) and normalise."""
    errors = validate_manifest(body, has_bundle=False, resolve_upload=None)
    if errors:
        raise _invalid(errors)
    return JobRequest(normalize_manifest(body), None)


def _only_bundle_fields(body: dict[str, Any], allowed: frozenset[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise ApiError(
            400,
            f'unexpected field "{extra[0]}" in a bundle submission; only bundle_id and initial_inputs are allowed',
        )


def _bundle_id(body: dict[str, Any]) -> str:
    bundle_id = body["bundle_id"]
    if not isinstance(bundle_id, str) or not bundle_id:
        raise ApiError(400, "bundle_id must be a non-empty string")
    _only_bundle_fields(body, BUNDLE_FIELDS)
    return bundle_id


def _bundle_manifest(view: dict[str, Any], body: dict[str, Any]) -> JobRequest:
    manifest = copy.deepcopy(view["manifest"])
    if "initial_inputs" in body:
        manifest["initial_inputs"] = copy.deepcopy(body["initial_inputs"])
    path = view["path"]
    if is_upload_path(path):  # an uploaded version: checked against its archive's file list (C.5.3)
        resolver = listed_payload_resolver(view["payload_files"], f"{path}/{PAYLOADS_NAME}")
    else:
        resolver = payload_resolver(Path(path) / PAYLOADS_NAME)
    errors = validate_manifest(manifest, has_bundle=True, resolve_upload=resolver)
    if errors:
        raise _invalid(errors)
    reference = {"bundle_id": view["bundle_id"], "fingerprint": view["fingerprint"], "path": path}
    return JobRequest(normalize_manifest(manifest), reference)


def _not_issued(path: Any) -> ApiError:
    shown = path if isinstance(path, str) else json.dumps(path, separators=(",", ":"), ensure_ascii=False)
    return ApiError(400, f"_bundle_path {shown} was not issued by an upload")


async def uploaded_version(api: Api, path: Any) -> dict[str, Any]:
    """Step 3 (SPEC C.5.4): the stored version an upload's `bundle_path` names, as a bundle view; else 400."""
    parsed = parse_upload_path(path)
    if parsed is None:
        raise _not_issued(path)
    bundle_id, fingerprint = parsed
    async with api.db.read() as conn:
        stored = await archives.version(conn, fingerprint)
    if stored is None or stored.bundle_id != bundle_id:
        raise _not_issued(path)
    return {
        "bundle_id": bundle_id,
        "fingerprint": fingerprint,
        "path": path,
        "manifest": stored.manifest,
        "payload_files": stored.payload_files,
    }


async def bundle_request(api: Api, body: dict[str, Any]) -> JobRequest:
    """Steps 6–9 for a bundle submission: its current accepted manifest, upload checks on its payloads/."""
    bundle_id = _bundle_id(body)
    async with api.db.read() as conn:
        view = await read_model.bundle_view(conn, bundle_id)
    if view is None:
        raise bundle_not_found(bundle_id)
    # Upload checks touch the filesystem: keep them off the event loop.
    return await asyncio.to_thread(_bundle_manifest, view, body)


async def submit(api: Api, body: dict[str, Any], idempotency_key: str | None) -> Submitted:
    """Run steps 2–10 of §2.7 on a parsed body; raises ApiError for the first failing step."""
    if not body:
        raise ApiError(400, EMPTY_PAYLOAD)
    uploaded = await uploaded_version(api, body["_bundle_path"]) if "_bundle_path" in body else None
    key = check_idempotency_key(idempotency_key)
    canonical = canonical_text(body)
    digest = sha256_hex(canonical)
    if key is not None:
        async with api.db.read() as conn:
            earlier = await read_model.submission_by_key(conn, key)
        if earlier is not None:
            if earlier.request_sha256 != digest:
                raise key_conflict(key)
            return Submitted(earlier.job_id, earlier.status, replayed=True)
    if uploaded is not None:
        _only_bundle_fields(body, UPLOADED_FIELDS)
        request = await asyncio.to_thread(_bundle_manifest, uploaded, body)
    elif "bundle_id" in body:
        request = await bundle_request(api, body)
    elif len(canonical) > PARSE_IN_THREAD_BYTES:
        # Validation is linear in the manifest's size (up to 10 MiB): keep it off the event loop.
        request = await asyncio.to_thread(raw_manifest_request, body)
    else:
        # A small manifest validates in ~0.1 ms, less than the hop to a worker thread costs.
        request = raw_manifest_request(body)
    try:
        return await api.service.submit(
            manifest=request.manifest, bundle=request.bundle, idempotency_key=key, request_sha256=digest
        )
    except IdempotencyMismatch:
        raise key_conflict(key or "") from None
