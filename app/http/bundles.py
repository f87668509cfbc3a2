"""Bundle routes: list, details, reload, upload (SPEC §2.16–§2.18, §9.5, C.2)."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

from litestar import Controller, Request, Response, Router, get, post
from litestar.datastructures import UploadFile
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.params import FromPath

from app.bundles import cache
from app.bundles.archive import ArchiveRefused
from app.bundles.scanner import BundleProblem
from app.bundles.uploads import in_thread, read_upload
from app.domain import events as ev
from app.domain.bundle import from_upload
from app.domain.events import Event
from app.http.body import too_large
from app.http.context import Api, ApiDep
from app.http.errors import ApiError, bundle_not_found
from app.http.schemas import BUNDLE_UPLOAD_SCHEMA, operation_class, responses
from app.service import BundleRegistry, version_of
from app.store import read_model
from app.wire import BundleDetail, BundleList, Reloaded, ReloadUnchanged, Uploaded

RELOAD_REASON = "api_request"
MISSING_UPLOAD = "missing 'bundle' file upload"


def _unchanged(bundle_id: str) -> dict[str, Any]:
    return {
        "bundle_id": bundle_id,
        "changed": False,
        "reloaded": False,
        "message": "No bundle changes detected",
    }


def _registry(api: Api) -> BundleRegistry:
    return BundleRegistry(api.service, api.settings, api.node_name)


def _reloaded(bundle_id: str, event: Event) -> dict[str, Any]:
    current = event.payload["current_fingerprint" if event.type == ev.BUNDLE_RELOADED else "fingerprint"]
    return {
        "bundle_id": bundle_id,
        "changed": True,
        "reloaded": True,
        "previous_fingerprint": event.payload.get("previous_fingerprint"),
        "current_fingerprint": current,
        "reason": RELOAD_REASON,
        "message": "Bundle reloaded successfully",
        "timestamp": event.timestamp,
    }


async def register_new_directory(api: Api, bundle_id: str) -> dict[str, Any]:
    """Reload of an unregistered id (SPEC C.2.5, C.5.5): register the new directory that names it."""
    registered = await _registry(api).register_directory(bundle_id, RELOAD_REASON)
    if registered is None:
        raise bundle_not_found(bundle_id)
    recorded, errors = registered
    if errors is not None:  # no stream to record a rejection on: nothing is written
        raise ApiError(422, "Manifest validation failed", errors=errors)
    if not recorded:  # registered meanwhile by another node: reload it as a registered bundle
        return await reload_bundle(api, bundle_id)
    return _reloaded(bundle_id, recorded[0])


async def reload_bundle(api: Api, bundle_id: str) -> dict[str, Any]:
    """Re-read a registered bundle's folder and record the outcome; 404/422 as ApiError."""
    async with api.db.read() as conn:
        view = await read_model.bundle_view(conn, bundle_id)
    if view is None:
        return await register_new_directory(api, bundle_id)
    if from_upload(view):  # an uploaded version has no folder to re-read (SPEC C.5.5)
        return _unchanged(bundle_id)
    recorded, errors = await _registry(api).reload(bundle_id, view["path"], RELOAD_REASON)
    if errors is not None:
        raise ApiError(422, "Manifest validation failed", errors=errors)
    reloaded = [e for e in recorded if e.type == ev.BUNDLE_RELOADED]
    if not reloaded:
        return _unchanged(bundle_id)
    return _reloaded(bundle_id, reloaded[0])


async def _upload_form(request: Request[Any, Any, Any], limit: int) -> UploadFile:
    """The `bundle` file of a multipart body parsed by Litestar; 413 past the body limit."""
    try:
        form = await request.form()
    except RequestEntityTooLarge:
        raise too_large(limit) from None
    upload = form.get("bundle")
    for value in form.values():  # every other file part is spooled too: let them go now
        if isinstance(value, UploadFile) and value is not upload:
            await value.close()
    if not isinstance(upload, UploadFile):
        raise ApiError(400, MISSING_UPLOAD)
    return upload


async def upload_bundle(api: Api, request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Judge an uploaded zip as a scanned bundle, store it and record it (SPEC C.2.1–C.2.2, C.5.1–C.5.3)."""
    settings = api.settings
    upload = await _upload_form(request, settings.max_body_bytes)
    try:
        judged = await in_thread(
            read_upload,
            upload.file,
            cache.cache_root(settings.temp_dir),
            max_bytes=settings.bundle_upload_max_bytes,
            reload_mode_override=settings.bundle_reload_mode,
            reload_interval_override=settings.bundle_reload_interval_seconds,
        )
    except ArchiveRefused as exc:
        raise ApiError(400, str(exc)) from None
    finally:
        await upload.close()
    if isinstance(judged, BundleProblem):
        raise ApiError(400, "Manifest validation failed", errors=judged.errors)
    found = judged.candidate
    try:
        recorded = await api.service.upload_bundle(
            version_of(found), judged.archive, judged.expanded_bytes, api.node_name
        )
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, judged.extracted, True)
        raise
    # This node has the version extracted already: keep it as its cached copy (C.2.3).
    await asyncio.to_thread(cache.adopt, judged.extracted, settings.temp_dir, found.fingerprint)
    return {
        "bundle_id": found.bundle_id,
        "fingerprint": found.fingerprint,
        "bundle_path": found.path,
        "manifest": found.manifest,
        "changed": bool(recorded),
    }


class BundleUploadController(Controller):
    """Bundle uploads: the one route that reads multipart/form-data (SPEC C.5.1)."""

    path = "/upload"
    tags = ["bundles"]

    @post(
        "/",
        operation_id="uploadBundle",
        operation_class=operation_class(body=BUNDLE_UPLOAD_SCHEMA, required=True, body_media_type="multipart/form-data"),
        status_code=200,
        responses=responses({200: (Uploaded, "Bundle stored and registered (or unchanged)")}, (400, 413)),
    )
    async def upload(self, request: Request[Any, Any, Any], api: ApiDep) -> Response[dict[str, Any]]:
        """Upload a zipped bundle (file field `bundle`); its `bundle_path` submits that version."""
        return Response(await upload_bundle(api, request))


def upload_router(max_body_bytes: int) -> Router:
    """The upload route with Litestar's multipart parser capped at MIRROR_NEURON_MAX_BODY_BYTES."""
    return Router(
        path="/api/v1/bundles",
        route_handlers=[BundleUploadController],
        request_max_body_size=max_body_bytes,
    )


class BundlesController(Controller):
    """Registered bundles."""

    path = "/api/v1/bundles"
    tags = ["bundles"]

    @get(
        "/",
        operation_id="listBundles",
        responses=responses({200: (BundleList, "Bundles sorted by bundle_id")}),
    )
    async def list_bundles(self, api: ApiDep) -> dict[str, Any]:
        """BundleSummaries sorted by bundle_id."""
        async with api.db.read() as conn:
            return {"data": await read_model.list_bundles(conn)}

    @get(
        "/{bundle_id:str}",
        operation_id="getBundle",
        responses=responses({200: (BundleDetail, "Bundle details")}, (400, 404)),
    )
    async def get_bundle(self, api: ApiDep, bundle_id: FromPath[str]) -> dict[str, Any]:
        """BundleDetail: the current version, its manifest, payload files and history."""
        async with api.db.read() as conn:
            found = await read_model.bundle_detail(conn, bundle_id)
        if found is None:
            raise bundle_not_found(bundle_id)
        return found

    @post(
        "/{bundle_id:str}/reload",
        operation_id="reloadBundle",
        status_code=200,
        responses=responses(
            {200: (Reloaded | ReloadUnchanged, "Reloaded, or no change detected")}, (400, 403, 404, 422)
        ),
    )
    async def reload(self, api: ApiDep, bundle_id: FromPath[str]) -> Response[dict[str, Any]]:
        """Re-read the bundle's folder: a new valid version is accepted, an invalid one rejected (422)."""
        return Response(await reload_bundle(api, bundle_id))
