"""Bundle routes: list, details, reload (SPEC §2.16–§2.18, §9.5)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from litestar import Controller, Response, get, post
from litestar.params import FromPath

from app.bundles.scanner import BundleCandidate, BundleProblem, read_bundle_dir
from app.domain import events as ev
from app.domain.bundle import BundleVersion
from app.http.context import Api, ApiDep
from app.http.errors import ApiError, bundle_not_found
from app.http.schemas import BundleDetail, BundleList, Reloaded, ReloadUnchanged, responses
from app.store import read_model

RELOAD_REASON = "api_request"


def _unchanged(bundle_id: str) -> dict[str, Any]:
    return {
        "bundle_id": bundle_id,
        "changed": False,
        "reloaded": False,
        "message": "No bundle changes detected",
    }


def _version(bundle_id: str, found: BundleCandidate) -> BundleVersion:
    return BundleVersion(
        bundle_id=bundle_id,
        path=found.path,
        fingerprint=found.fingerprint,
        manifest=found.manifest,
        reload=found.reload,
        payload_files=tuple(found.payload_files),
    )


async def reload_bundle(api: Api, bundle_id: str) -> dict[str, Any]:
    """Re-read a registered bundle's folder and record the outcome; 404/422 as ApiError."""
    async with api.db.read() as conn:
        view = await read_model.bundle_view(conn, bundle_id)
    if view is None:
        raise bundle_not_found(bundle_id)
    settings = api.settings
    found = await asyncio.to_thread(
        read_bundle_dir,
        Path(view["path"]),
        expected_bundle_id=bundle_id,
        reload_mode_override=settings.bundle_reload_mode,
        reload_interval_override=settings.bundle_reload_interval_seconds,
    )
    if isinstance(found, BundleProblem):
        await api.service.reload_bundle(
            bundle_id,
            version=None,
            fingerprint=found.fingerprint,
            errors=found.errors,
            reason=RELOAD_REASON,
            node=api.node_name,
        )
        raise ApiError(422, "Manifest validation failed", errors=found.errors)
    recorded = await api.service.reload_bundle(
        bundle_id,
        version=_version(bundle_id, found),
        fingerprint=found.fingerprint,
        errors=[],
        reason=RELOAD_REASON,
        node=api.node_name,
    )
    reloaded = [e for e in recorded if e.type == ev.BUNDLE_RELOADED]
    if not reloaded:
        return _unchanged(bundle_id)
    event = reloaded[0]
    return {
        "bundle_id": bundle_id,
        "changed": True,
        "reloaded": True,
        "previous_fingerprint": event.payload["previous_fingerprint"],
        "current_fingerprint": event.payload["current_fingerprint"],
        "reason": RELOAD_REASON,
        "message": "Bundle reloaded successfully",
        "timestamp": event.timestamp,
    }


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
            {200: (Reloaded | ReloadUnchanged, "Reloaded, or no change detected")}, (400, 404, 422)
        ),
    )
    async def reload(self, api: ApiDep, bundle_id: FromPath[str]) -> Response[dict[str, Any]]:
        """Re-read the bundle's folder: a new valid version is accepted, an invalid one rejected (422)."""
        return Response(await reload_bundle(api, bundle_id))
