"""Bundle stream decisions and the bundle projection (SPEC §9), pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.domain import events as ev
from app.domain import upcasting
from app.domain.events import Event, NewEvent


@dataclass(frozen=True)
class BundleVersion:
    """A bundle directory read from disk that passed validation."""

    bundle_id: str
    path: str
    fingerprint: str
    manifest: dict[str, Any]
    reload: dict[str, Any]
    payload_files: tuple[str, ...]


UPLOAD_PATH_PREFIX = "upload:"


def from_upload(view: dict[str, Any] | None) -> bool:
    """True when the bundle's current version came from an upload (its path is `upload:<id>@<fp>`)."""
    return view is not None and str(view["path"]).startswith(UPLOAD_PATH_PREFIX)


def decide_scan(view: dict[str, Any] | None, version: BundleVersion, node: str) -> list[NewEvent]:
    """Startup scan (SPEC §9.2): register, reload, or nothing when path and fingerprint match.

    A scan never replaces a version that came from an upload (SPEC C.5.5).
    """
    if view is None:
        return _registered(version, "startup_scan", node)
    if from_upload(view) or (view["path"] == version.path and view["fingerprint"] == version.fingerprint):
        return []
    return [_reloaded(view, version, "startup_scan", node)]


def decide_discovery(view: dict[str, Any] | None, version: BundleVersion, reason: str, node: str) -> list[NewEvent]:
    """A new directory found after start (SPEC C.2.5): registered unless the id is registered meanwhile."""
    return _registered(version, reason, node) if view is None else []


def decide_upload(view: dict[str, Any] | None, version: BundleVersion, node: str) -> list[NewEvent]:
    """An accepted upload (SPEC C.2.2, C.5.5): register, reload, or nothing when the fingerprint is current."""
    if view is None:
        return _registered(version, "upload", node)
    if view["fingerprint"] == version.fingerprint:
        return []
    return [_reloaded(view, version, "upload", node)]


def _registered(version: BundleVersion, reason: str, node: str) -> list[NewEvent]:
    return [NewEvent(ev.BUNDLE_REGISTERED, _version_payload(version) | {"reason": reason, "node": node})]


def decide_reload(
    view: dict[str, Any],
    *,
    version: BundleVersion | None,
    fingerprint: str | None,
    errors: list[str],
    reason: str,
    node: str,
) -> list[NewEvent]:
    """Reload (SPEC §9.5): nothing when unchanged, else `bundle_reloaded` or `bundle_reload_rejected`."""
    if fingerprint is not None and fingerprint == view["fingerprint"]:
        return []
    if version is not None:
        return [_reloaded(view, version, reason, node)]
    if reason == "interval_scan" and fingerprint is not None and fingerprint == view.get("last_rejected_fingerprint"):
        return []
    payload = {
        "bundle_id": view["bundle_id"],
        "path": view["path"],
        "fingerprint": fingerprint,
        "errors": errors,
        "reason": reason,
        "node": node,
    }
    return [NewEvent(ev.BUNDLE_RELOAD_REJECTED, payload)]


def _version_payload(version: BundleVersion) -> dict[str, Any]:
    return {
        "bundle_id": version.bundle_id,
        "path": version.path,
        "fingerprint": version.fingerprint,
        "manifest": version.manifest,
        "reload": version.reload,
        "payload_files": list(version.payload_files),
    }


def _reloaded(view: dict[str, Any], version: BundleVersion, reason: str, node: str) -> NewEvent:
    payload = _version_payload(version)
    fingerprint = payload.pop("fingerprint")
    payload |= {
        "previous_fingerprint": view["fingerprint"],
        "current_fingerprint": fingerprint,
        "reason": reason,
        "node": node,
    }
    return NewEvent(ev.BUNDLE_RELOADED, payload)


def project_bundle(view: dict[str, Any] | None, event: Event) -> dict[str, Any]:
    """Return the bundle projection after one bundle event (upcast to its current shape)."""
    event = upcasting.current_registry().upcast(event)
    p = event.payload
    if event.type == ev.BUNDLE_REGISTERED:
        return _accepted({"history": []}, p, p["fingerprint"], event, version=1) | {
            "registered_at": event.timestamp,
            "last_rejected_fingerprint": None,
        }
    assert view is not None
    if event.type == ev.BUNDLE_RELOADED:
        return _accepted(view, p, p["current_fingerprint"], event, version=view["version"] + 1)
    if event.type == ev.BUNDLE_RELOAD_REJECTED:
        error = {"timestamp": event.timestamp, "fingerprint": p["fingerprint"], "errors": p["errors"]}
        return view | {"last_reload_error": error, "last_rejected_fingerprint": p["fingerprint"]}
    return view


def _accepted(
    view: dict[str, Any], p: dict[str, Any], fingerprint: str, event: Event, *, version: int
) -> dict[str, Any]:
    manifest = p["manifest"]
    entry = {
        "version": version,
        "event": event.type,
        "fingerprint": fingerprint,
        "timestamp": event.timestamp,
        "reason": p["reason"],
    }
    return view | {
        "bundle_id": p["bundle_id"],
        "graph_id": manifest["graph_id"],
        "job_name": manifest["job_name"],
        "manifest_version": manifest["manifest_version"],
        "path": p["path"],
        "fingerprint": fingerprint,
        "version": version,
        "last_reloaded": event.timestamp,
        "reload": p["reload"],
        "last_reload_error": None,
        "manifest": manifest,
        "payload_files": p["payload_files"],
        "history": [*view["history"], entry],
    }


def summary(view: dict[str, Any]) -> dict[str, Any]:
    """BundleSummary (SPEC §9.6)."""
    keys = (
        "bundle_id", "graph_id", "job_name", "manifest_version", "path", "fingerprint", "version",
        "registered_at", "last_reloaded", "reload", "last_reload_error",
    )
    return {k: view[k] for k in keys}


def detail(view: dict[str, Any]) -> dict[str, Any]:
    """BundleDetail (SPEC §9.6)."""
    return summary(view) | {
        "manifest": view["manifest"],
        "payload_files": view["payload_files"],
        "history": view["history"],
    }
