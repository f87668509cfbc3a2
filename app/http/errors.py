"""The JSON error envelope (SPEC §2.1) and the mapping of every exception onto it."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, MethodNotAllowedException, NotFoundException
from litestar.types import ExceptionHandlersMap

from app.domain.job import Rejected
from app.store.database import is_pool_timeout, is_unavailable

log = logging.getLogger(__name__)

NOT_FOUND = "Not Found"
METHOD_NOT_ALLOWED = "Method Not Allowed"
INTERNAL = "internal server error"
DATABASE_UNAVAILABLE = "database unavailable"


class ApiError(Exception):
    """A client-facing failure: its status, the `error` sentence, and optional `errors` and headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}


def error_response(
    status: int, message: str, *, errors: list[str] | None = None, headers: dict[str, str] | None = None
) -> Response[dict[str, Any]]:
    """`{"error": message}` (plus `errors` when given) with the status and headers."""
    body: dict[str, Any] = {"error": message}
    if errors is not None:
        body["errors"] = errors
    return Response(body, status_code=status, headers=headers or {})


def job_not_found(job_id: str) -> ApiError:
    """404 for an unknown or cleaned-up job."""
    return ApiError(404, f"job {job_id} was not found")


def bundle_not_found(bundle_id: str) -> ApiError:
    """404 for a bundle that is not registered."""
    return ApiError(404, f"Bundle {bundle_id} not found")


def _api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[dict[str, Any]]:
    return error_response(exc.status, exc.message, errors=exc.errors, headers=exc.headers)


def _rejected(_: Request[Any, Any, Any], exc: Rejected) -> Response[dict[str, Any]]:
    return error_response(404 if exc.kind == "not_found" else 409, exc.message)


def _allowed_methods(exc: HTTPException) -> str:
    # The router lists the OPTIONS handler it adds to every path; OPTIONS is not part of the API.
    listed = (exc.headers or {}).get("allow", "")
    methods = sorted({m.strip() for m in listed.split(",") if m.strip() and m.strip() != "OPTIONS"})
    return ", ".join(methods)


def _http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    if isinstance(exc, NotFoundException):
        return error_response(404, NOT_FOUND)
    if isinstance(exc, MethodNotAllowedException):
        return error_response(405, METHOD_NOT_ALLOWED, headers={"Allow": _allowed_methods(exc)})
    if exc.status_code >= 500:
        return _unexpected(request, exc)
    return error_response(exc.status_code, str(exc.detail))


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    if is_unavailable(exc) or is_pool_timeout(exc):
        # Never the driver's text: it may name the host, the user or the password.
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return error_response(503, DATABASE_UNAVAILABLE)
    log.error("unexpected failure on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, INTERNAL)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ApiError: _api_error,
    Rejected: _rejected,
    HTTPException: _http_exception,
    Exception: _unexpected,
}
