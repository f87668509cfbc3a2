"""The Python client of the MirrorNeuron API (SPEC §2, Appendix C): `Client` and `AsyncClient` on httpx.

Every endpoint is a method returning a typed result (the msgspec Structs of `app.wire`); every error
answer raises `ApiError` with the status and the server's `error` and `errors`. Reads are retried on a
dropped connection or a 502/503/504; a write is retried only when it carries an `Idempotency-Key`
(the server then answers a retry with the first result, SPEC §2.7, C.5.9). `wait` and the `follow_*`
iterators read the NDJSON event streams and resume from the last event seen when a connection drops.

    with Client("http://127.0.0.1:4000", token="...") as mn:
        job = mn.submit(manifest, idempotency_key="nightly-2026-12-06")
        details = mn.wait(job.job_id, timeout=600)
"""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec

from app.wire import (
    BundleDetail,
    BundleList,
    BundleSummary,
    Cleanup,
    EventPage,
    EventRecord,
    JobDetails,
    JobList,
    JobSummary,
    MessageAccepted,
    NodeList,
    NodeSummary,
    Reloaded,
    ReloadUnchanged,
    StatusChange,
    SystemSummary,
    Uploaded,
)

API = "/api/v1"
NDJSON = "application/x-ndjson"
TERMINAL_EVENTS = frozenset({"job_completed", "job_failed", "job_cancelled"})
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
RETRY_STATUSES = frozenset({502, 503, 504})
# A followed stream sends a keep-alive every 15 s (SPEC §2.14): a read this long without one is a dead link.
STREAM_READ_TIMEOUT = 45.0
T = TypeVar("T")


class ApiError(Exception):
    """An answer other than 2xx (`status` 0: no answer at all), with the server's `error` and `errors`."""

    def __init__(self, status: int, error: str, errors: list[str] | None = None, body: Any = None) -> None:
        super().__init__(f"HTTP {status}: {error}" if status else error)
        self.status = status
        self.error = error
        self.errors = list(errors or [])
        self.body = body


@dataclass(frozen=True)
class Submission:
    """A submitted job; `replayed` when an earlier submission with the same key answered."""

    job_id: str
    status: str
    replayed: bool


@dataclass
class Progress:
    """What `wait` has seen of a job so far (given to `on_progress` after every event)."""

    job_id: str
    status: str = "pending"
    events: int = 0
    agents_total: int = 0
    agents_done: set[str] = field(default_factory=set)
    executor_runs: int = 0
    executor_failures: int = 0
    started: float = field(default_factory=time.monotonic)
    last_event: EventRecord | None = None

    @property
    def elapsed(self) -> float:
        """Seconds since `wait` began."""
        return time.monotonic() - self.started

    def add(self, event: EventRecord) -> None:
        """Count one event of the job's stream."""
        self.events += 1
        self.last_event = event
        kind = event.type
        if kind == "job_submitted":
            self.agents_total = len(event.payload.get("manifest", {}).get("nodes", []))
        elif kind == "message_processed" and event.agent_id is not None:
            self.agents_done.add(event.agent_id)
        elif kind == "sandbox_job_completed":
            self.executor_runs += 1
        elif kind == "executor_attempt_failed":
            self.executor_failures += 1
        self.status = _STATUS_AFTER.get(kind, self.status)


_STATUS_AFTER = {
    "job_queued": "queued",
    "job_running": "running",
    "job_resumed": "running",
    "job_paused": "paused",
    "job_completed": "completed",
    "job_failed": "failed",
    "job_cancelled": "cancelled",
}


# ------------------------------------------------------------------ requests, independent of sync/async


@dataclass(frozen=True)
class _Call:
    """One request: what to send, how to read the answer, and whether a retry is safe."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] | None = None
    files: dict[str, Any] | None = None
    retry: bool = True


def _quoted(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _key(idempotency_key: str | None) -> dict[str, str] | None:
    return {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None


def _write(method: str, path: str, *, idempotency_key: str | None = None, **kwargs: Any) -> _Call:
    return _Call(method, path, headers=_key(idempotency_key), retry=idempotency_key is not None, **kwargs)


def _list_params(
    status: str | list[str] | None, graph_id: str | None, include_terminal: bool | None, limit: int, cursor: str | None
) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status if isinstance(status, str) else ",".join(status)
    if graph_id is not None:
        params["graph_id"] = graph_id
    if include_terminal is False:
        params["include_terminal"] = "false"
    if cursor is not None:
        params["cursor"] = cursor
    return params


def _submit_body(
    manifest: dict[str, Any] | None, bundle_id: str | None, initial_inputs: Any, bundle_path: str | None
) -> dict[str, Any]:
    if sum(x is not None for x in (manifest, bundle_id, bundle_path)) != 1:
        raise ValueError("give exactly one of manifest, bundle_id or bundle_path")
    if manifest is not None:
        return manifest
    body: dict[str, Any] = {"bundle_id": bundle_id} if bundle_id is not None else {"_bundle_path": bundle_path}
    if initial_inputs is not None:
        body["initial_inputs"] = initial_inputs
    return body


def bundle_archive(path: str | Path) -> bytes:
    """The bytes of a bundle zip: a `.zip` file as it is, a directory zipped (its files under its name)."""
    source = Path(path)
    if source.is_file():
        return source.read_bytes()
    if not (source / "manifest.json").is_file():
        raise ValueError(f"{source} is neither a zip file nor a bundle directory with a manifest.json")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in sorted(source.rglob("*")):
            if item.is_file() and not item.is_symlink():
                archive.write(item, Path(source.name) / item.relative_to(source))
    return buffer.getvalue()


def _error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return ApiError(response.status_code, body["error"], body.get("errors"), body)
    return ApiError(response.status_code, str(body) or response.reason_phrase, None, body)


def _unreachable(base_url: str, exc: Exception) -> ApiError:
    return ApiError(0, f"cannot reach {base_url}: {exc or type(exc).__name__}")


def _decode(content: bytes, kind: type[T]) -> T:
    return msgspec.json.decode(content, type=kind)


def _reload_result(content: bytes) -> Reloaded | ReloadUnchanged:
    data = msgspec.json.decode(content)
    if data.get("reloaded"):
        return msgspec.convert(data, Reloaded)
    return msgspec.convert(data, ReloadUnchanged)


def _submission(response: httpx.Response) -> Submission:
    data = response.json()
    replayed = response.headers.get("Idempotent-Replayed") == "true"
    return Submission(data["job_id"], data["status"], replayed)


def _base(url: str) -> str:
    url = url.rstrip("/")
    return url[: -len(API)] if url.endswith(API) else url


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _backoff(attempt: int) -> float:
    return float(min(0.2 * 2**attempt, 2.0))


@dataclass
class _Stream:
    """Where a resumable NDJSON stream stands: the cursor field and its value, when it ends."""

    path: str
    cursor_field: str
    after: int
    follow: bool
    deadline: float | None = None
    failures: int = 0

    @property
    def job_path(self) -> str | None:
        """`/jobs/<id>` for a job's stream; None for the global feed."""
        return self.path.removesuffix("/events") if self.path.startswith("/jobs/") else None

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"after": self.after}
        if self.follow:
            params["follow"] = "true"
        return params

    def read_timeout(self) -> float:
        if self.deadline is None:
            return STREAM_READ_TIMEOUT
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the job did not end in time")
        return min(STREAM_READ_TIMEOUT, remaining)

    def event(self, line: str | bytes) -> EventRecord | None:
        if not line.strip():
            return None  # keep-alive
        event = _decode(line.encode() if isinstance(line, str) else line, EventRecord)
        self.after = getattr(event, self.cursor_field)
        self.failures = 0
        return event

    def dropped(self, exc: Exception, retries: int, base_url: str) -> float:
        """The pause before reconnecting, or raise when the link stays down or the deadline passed."""
        self.read_timeout()
        self.failures += 1
        if self.failures > retries:
            raise _unreachable(base_url, exc) from exc
        return _backoff(self.failures)


class _Shared:
    """Settings common to both clients."""

    def __init__(self, base_url: str, token: str | None, timeout: float, retries: int) -> None:
        self.base_url = _base(base_url)
        self.token = token
        self.timeout = timeout
        self.retries = retries

    def _retryable(self, call: _Call, attempt: int, status: int | None) -> bool:
        return call.retry and attempt < self.retries and (status is None or status in RETRY_STATUSES)


# ------------------------------------------------------------------ the synchronous client


class Client(_Shared):
    """A blocking client; use it as a context manager or call `close()`."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:4000",
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token, timeout, retries)
        self._http = httpx.Client(
            base_url=self.base_url, headers=_auth(token), timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _send(self, call: _Call) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    call.method, API + call.path, params=call.params, json=call.json,
                    headers=call.headers, files=call.files,
                )
            except httpx.TransportError as exc:
                if not self._retryable(call, attempt, None):
                    raise _unreachable(self.base_url, exc) from exc
            else:
                if response.is_success:
                    return response
                if not self._retryable(call, attempt, response.status_code):
                    raise _error(response)
            time.sleep(_backoff(attempt))
            attempt += 1

    def _get(self, path: str, kind: type[T], params: dict[str, Any] | None = None) -> T:
        return _decode(self._send(_Call("GET", path, params=params)).content, kind)

    # system -------------------------------------------------------------------------------------

    def health(self) -> bool:
        """True when the process serves HTTP."""
        return bool(self._send(_Call("GET", "/health")).json()["status"] == "ok")

    def ready(self) -> bool:
        """True when the database answers and is migrated (503 raises ApiError)."""
        return bool(self._send(_Call("GET", "/health/ready")).json()["status"] == "ready")

    def summary(self) -> SystemSummary:
        """Nodes, recent jobs and counts."""
        return self._get("/system/summary", SystemSummary)

    def nodes(self) -> list[NodeSummary]:
        """Every node, sorted by name."""
        return self._get("/nodes", NodeList).data

    def openapi(self) -> dict[str, Any]:
        """The served OpenAPI document."""
        return dict(self._send(_Call("GET", "/schema/openapi.json")).json())

    # jobs ---------------------------------------------------------------------------------------

    def submit(
        self,
        manifest: dict[str, Any] | None = None,
        *,
        bundle_id: str | None = None,
        initial_inputs: Any = None,
        bundle_path: str | None = None,
        idempotency_key: str | None = None,
    ) -> Submission:
        """Submit a manifest, a registered bundle, or an uploaded bundle version (`bundle_path`)."""
        body = _submit_body(manifest, bundle_id, initial_inputs, bundle_path)
        return _submission(self._send(_write("POST", "/jobs", json=body, idempotency_key=idempotency_key)))

    def jobs(
        self,
        *,
        status: str | list[str] | None = None,
        graph_id: str | None = None,
        include_terminal: bool | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> JobList:
        """One page of jobs, most recently updated first; continue with its `next_cursor`."""
        return self._get("/jobs", JobList, _list_params(status, graph_id, include_terminal, limit, cursor))

    def iter_jobs(
        self,
        *,
        status: str | list[str] | None = None,
        graph_id: str | None = None,
        include_terminal: bool | None = None,
        page_size: int = 100,
    ) -> Iterator[JobSummary]:
        """Every matching job, page after page."""
        cursor: str | None = None
        while True:
            page = self.jobs(
                status=status, graph_id=graph_id, include_terminal=include_terminal, limit=page_size, cursor=cursor
            )
            yield from page.data
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def job(self, job_id: str) -> JobDetails:
        """Record, summary, agents, 25 newest events and sandboxes of one job."""
        return self._get(f"/jobs/{_quoted(job_id)}", JobDetails)

    def cancel(self, job_id: str, *, idempotency_key: str | None = None) -> StatusChange:
        """Cancel a live job (a cancelled one answers the same)."""
        call = _write("POST", f"/jobs/{_quoted(job_id)}/cancel", idempotency_key=idempotency_key)
        return _decode(self._send(call).content, StatusChange)

    def pause(self, job_id: str, *, idempotency_key: str | None = None) -> StatusChange:
        """Pause a running job."""
        call = _write("POST", f"/jobs/{_quoted(job_id)}/pause", idempotency_key=idempotency_key)
        return _decode(self._send(call).content, StatusChange)

    def resume(self, job_id: str, *, idempotency_key: str | None = None) -> StatusChange:
        """Resume a paused job."""
        call = _write("POST", f"/jobs/{_quoted(job_id)}/resume", idempotency_key=idempotency_key)
        return _decode(self._send(call).content, StatusChange)

    def message(
        self, job_id: str, agent_id: str, message: dict[str, Any] | None = None, *, idempotency_key: str | None = None
    ) -> MessageAccepted:
        """Deliver an external message to an agent of a running or paused job."""
        body = {"agent_id": agent_id, "message": message if message is not None else {}}
        call = _write("POST", f"/jobs/{_quoted(job_id)}/messages", json=body, idempotency_key=idempotency_key)
        return _decode(self._send(call).content, MessageAccepted)

    def cleanup(
        self, *, all: bool = False, older_than: int | None = None, idempotency_key: str | None = None
    ) -> Cleanup:
        """Delete terminal jobs (with `all`, cancel and delete live ones too)."""
        params: dict[str, Any] = {"all": "true"} if all else {}
        if older_than is not None:
            params["older_than"] = older_than
        call = _write("POST", "/jobs/cleanup", params=params, idempotency_key=idempotency_key)
        return _decode(self._send(call).content, Cleanup)

    # events -------------------------------------------------------------------------------------

    def events(self, job_id: str, *, after: int = 0, limit: int | None = None) -> EventPage:
        """One page of a job's events in ascending sequence; continue after `next_after`."""
        params: dict[str, Any] = {"after": after} if limit is None else {"after": after, "limit": limit}
        return self._get(f"/jobs/{_quoted(job_id)}/events", EventPage, params)

    def iter_events(self, job_id: str, *, after: int = 0) -> Iterator[EventRecord]:
        """Every event of a job after `after`, streamed (constant memory), resumed if the link drops."""
        return self._stream(_Stream(f"/jobs/{_quoted(job_id)}/events", "sequence", after, follow=False))

    def follow_events(self, job_id: str, *, after: int = 0) -> Iterator[EventRecord]:
        """A job's events as they commit, until its terminal event (or its cleanup)."""
        return self._stream(_Stream(f"/jobs/{_quoted(job_id)}/events", "sequence", after, follow=True))

    def feed(self, *, after: int = 0, limit: int = 100) -> EventPage:
        """One page of the global feed of job events, in ascending position."""
        return self._get("/events", EventPage, {"after": after, "limit": limit})

    def iter_feed(self, *, after: int = 0, page_size: int = 1000) -> Iterator[EventRecord]:
        """Every job event committed so far after position `after`, page after page."""
        while True:
            page = self.feed(after=after, limit=page_size)
            yield from page.data
            if page.next_after is None:
                return
            after = page.next_after

    def follow_feed(self, *, after: int = 0) -> Iterator[EventRecord]:
        """Every job event after position `after`, then each new one, forever; store `event.position`
        to resume later. A dropped connection is resumed from the last position seen."""
        return self._stream(_Stream("/events", "position", after, follow=True))

    def wait(
        self, job_id: str, *, timeout: float | None = None, on_progress: Callable[[Progress], None] | None = None
    ) -> JobDetails:
        """Follow the job's events until its terminal event; its details then. TimeoutError after `timeout` s."""
        progress = Progress(job_id)
        deadline = None if timeout is None else progress.started + timeout
        stream = _Stream(f"/jobs/{_quoted(job_id)}/events", "sequence", 0, follow=True, deadline=deadline)
        for event in self._stream(stream):
            progress.add(event)
            if on_progress is not None:
                on_progress(progress)
        details = self.job(job_id)
        if details.job.status not in TERMINAL_STATUSES:
            raise ApiError(404, f"job {job_id} was not found")  # the stream ended: the job was cleaned up
        return details

    def _stream(self, stream: _Stream) -> Iterator[EventRecord]:
        seen = False
        while True:
            try:
                with self._http.stream(
                    "GET", API + stream.path, params=stream.params(), headers={"Accept": NDJSON},
                    timeout=httpx.Timeout(self.timeout, read=stream.read_timeout()),
                ) as response:
                    if not response.is_success:
                        response.read()
                        error = _error(response)
                        if error.status == 404 and seen:
                            return  # deleted by cleanup while we followed
                        if error.status not in RETRY_STATUSES:
                            raise error
                        raise httpx.RemoteProtocolError(error.error)
                    for line in response.iter_lines():
                        event = stream.event(line)
                        if event is None:
                            continue
                        seen = True
                        yield event
                        if stream.follow and stream.job_path and event.type in TERMINAL_EVENTS:
                            return
                if not stream.follow or (stream.job_path and self._over(stream.job_path)):
                    return
            except httpx.TransportError as exc:
                time.sleep(stream.dropped(exc, self.retries, self.base_url))

    def _over(self, job_path: str) -> bool:
        """After a followed job stream ended without its terminal event: is the job over (or deleted)?"""
        try:
            return _decode(self._send(_Call("GET", job_path)).content, JobDetails).job.status in TERMINAL_STATUSES
        except ApiError as exc:
            if exc.status == 404:
                return True
            raise

    # bundles ------------------------------------------------------------------------------------

    def bundles(self) -> list[BundleSummary]:
        """Every registered bundle, sorted by id."""
        return self._get("/bundles", BundleList).data

    def bundle(self, bundle_id: str) -> BundleDetail:
        """One bundle with its manifest, payload files and history."""
        return self._get(f"/bundles/{_quoted(bundle_id)}", BundleDetail)

    def reload_bundle(self, bundle_id: str) -> Reloaded | ReloadUnchanged:
        """Re-read a bundle's folder (or register a new folder of that id)."""
        return _reload_result(self._send(_Call("POST", f"/bundles/{_quoted(bundle_id)}/reload", retry=False)).content)

    def upload_bundle(self, path: str | Path) -> Uploaded:
        """Upload a bundle directory (zipped here) or zip file; unchanged content appends nothing, so a
        retry is safe."""
        files = {"bundle": ("bundle.zip", bundle_archive(path), "application/zip")}
        return _decode(self._send(_Call("POST", "/bundles/upload", files=files)).content, Uploaded)


# ------------------------------------------------------------------ the asynchronous client


class AsyncClient(_Shared):
    """The same API for asyncio; use it with `async with` or call `aclose()`."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:4000",
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token, timeout, retries)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=_auth(token), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _send(self, call: _Call) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    call.method, API + call.path, params=call.params, json=call.json,
                    headers=call.headers, files=call.files,
                )
            except httpx.TransportError as exc:
                if not self._retryable(call, attempt, None):
                    raise _unreachable(self.base_url, exc) from exc
            else:
                if response.is_success:
                    return response
                if not self._retryable(call, attempt, response.status_code):
                    raise _error(response)
            await asyncio.sleep(_backoff(attempt))
            attempt += 1

    async def _get(self, path: str, kind: type[T], params: dict[str, Any] | None = None) -> T:
        return _decode((await self._send(_Call("GET", path, params=params))).content, kind)

    async def health(self) -> bool:
        """True when the process serves HTTP."""
        return bool((await self._send(_Call("GET", "/health"))).json()["status"] == "ok")

    async def ready(self) -> bool:
        """True when the database answers and is migrated (503 raises ApiError)."""
        return bool((await self._send(_Call("GET", "/health/ready"))).json()["status"] == "ready")

    async def summary(self) -> SystemSummary:
        """Nodes, recent jobs and counts."""
        return await self._get("/system/summary", SystemSummary)

    async def nodes(self) -> list[NodeSummary]:
        """Every node, sorted by name."""
        return (await self._get("/nodes", NodeList)).data

    async def openapi(self) -> dict[str, Any]:
        """The served OpenAPI document."""
        return dict((await self._send(_Call("GET", "/schema/openapi.json"))).json())

    async def submit(
        self,
        manifest: dict[str, Any] | None = None,
        *,
        bundle_id: str | None = None,
        initial_inputs: Any = None,
        bundle_path: str | None = None,
        idempotency_key: str | None = None,
    ) -> Submission:
        """Submit a manifest, a registered bundle, or an uploaded bundle version (`bundle_path`)."""
        body = _submit_body(manifest, bundle_id, initial_inputs, bundle_path)
        return _submission(await self._send(_write("POST", "/jobs", json=body, idempotency_key=idempotency_key)))

    async def jobs(
        self,
        *,
        status: str | list[str] | None = None,
        graph_id: str | None = None,
        include_terminal: bool | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> JobList:
        """One page of jobs, most recently updated first; continue with its `next_cursor`."""
        return await self._get("/jobs", JobList, _list_params(status, graph_id, include_terminal, limit, cursor))

    async def iter_jobs(
        self,
        *,
        status: str | list[str] | None = None,
        graph_id: str | None = None,
        include_terminal: bool | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[JobSummary]:
        """Every matching job, page after page."""
        cursor: str | None = None
        while True:
            page = await self.jobs(
                status=status, graph_id=graph_id, include_terminal=include_terminal, limit=page_size, cursor=cursor
            )
            for job in page.data:
                yield job
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def job(self, job_id: str) -> JobDetails:
        """Record, summary, agents, 25 newest events and sandboxes of one job."""
        return await self._get(f"/jobs/{_quoted(job_id)}", JobDetails)

    async def cancel(self, job_id: str, *, idempotency_key: str | None = None) -> StatusChange:
        """Cancel a live job (a cancelled one answers the same)."""
        call = _write("POST", f"/jobs/{_quoted(job_id)}/cancel", idempotency_key=idempotency_key)
        return _decode((await self._send(call)).content, StatusChange)

    async def pause(self, job_id: str, *, idempotency_key: str | None = None) -> StatusChange:
        """Pause a running job."""
        call = _write("POST", f"/jobs/{_quoted(job_id)}/pause", idempotency_key=idempotency_key)
        return _decode((await self._send(call)).content, StatusChange)

    async def resume(self, job_id: str, *, idempotency_key: str | None = None) -> StatusChange:
        """Resume a paused job."""
        call = _write("POST", f"/jobs/{_quoted(job_id)}/resume", idempotency_key=idempotency_key)
        return _decode((await self._send(call)).content, StatusChange)

    async def message(
        self, job_id: str, agent_id: str, message: dict[str, Any] | None = None, *, idempotency_key: str | None = None
    ) -> MessageAccepted:
        """Deliver an external message to an agent of a running or paused job."""
        body = {"agent_id": agent_id, "message": message if message is not None else {}}
        call = _write("POST", f"/jobs/{_quoted(job_id)}/messages", json=body, idempotency_key=idempotency_key)
        return _decode((await self._send(call)).content, MessageAccepted)

    async def cleanup(
        self, *, all: bool = False, older_than: int | None = None, idempotency_key: str | None = None
    ) -> Cleanup:
        """Delete terminal jobs (with `all`, cancel and delete live ones too)."""
        params: dict[str, Any] = {"all": "true"} if all else {}
        if older_than is not None:
            params["older_than"] = older_than
        call = _write("POST", "/jobs/cleanup", params=params, idempotency_key=idempotency_key)
        return _decode((await self._send(call)).content, Cleanup)

    async def events(self, job_id: str, *, after: int = 0, limit: int | None = None) -> EventPage:
        """One page of a job's events in ascending sequence; continue after `next_after`."""
        params: dict[str, Any] = {"after": after} if limit is None else {"after": after, "limit": limit}
        return await self._get(f"/jobs/{_quoted(job_id)}/events", EventPage, params)

    def iter_events(self, job_id: str, *, after: int = 0) -> AsyncIterator[EventRecord]:
        """Every event of a job after `after`, streamed (constant memory), resumed if the link drops."""
        return self._stream(_Stream(f"/jobs/{_quoted(job_id)}/events", "sequence", after, follow=False))

    def follow_events(self, job_id: str, *, after: int = 0) -> AsyncIterator[EventRecord]:
        """A job's events as they commit, until its terminal event (or its cleanup)."""
        return self._stream(_Stream(f"/jobs/{_quoted(job_id)}/events", "sequence", after, follow=True))

    async def feed(self, *, after: int = 0, limit: int = 100) -> EventPage:
        """One page of the global feed of job events, in ascending position."""
        return await self._get("/events", EventPage, {"after": after, "limit": limit})

    async def iter_feed(self, *, after: int = 0, page_size: int = 1000) -> AsyncIterator[EventRecord]:
        """Every job event committed so far after position `after`, page after page."""
        while True:
            page = await self.feed(after=after, limit=page_size)
            for event in page.data:
                yield event
            if page.next_after is None:
                return
            after = page.next_after

    def follow_feed(self, *, after: int = 0) -> AsyncIterator[EventRecord]:
        """Every job event after position `after`, then each new one, forever; resumed after a drop."""
        return self._stream(_Stream("/events", "position", after, follow=True))

    async def wait(
        self, job_id: str, *, timeout: float | None = None, on_progress: Callable[[Progress], None] | None = None
    ) -> JobDetails:
        """Follow the job's events until its terminal event; its details then. TimeoutError after `timeout` s."""
        progress = Progress(job_id)
        deadline = None if timeout is None else progress.started + timeout
        stream = _Stream(f"/jobs/{_quoted(job_id)}/events", "sequence", 0, follow=True, deadline=deadline)
        async for event in self._stream(stream):
            progress.add(event)
            if on_progress is not None:
                on_progress(progress)
        details = await self.job(job_id)
        if details.job.status not in TERMINAL_STATUSES:
            raise ApiError(404, f"job {job_id} was not found")
        return details

    async def _stream(self, stream: _Stream) -> AsyncIterator[EventRecord]:
        seen = False
        while True:
            try:
                async with self._http.stream(
                    "GET", API + stream.path, params=stream.params(), headers={"Accept": NDJSON},
                    timeout=httpx.Timeout(self.timeout, read=stream.read_timeout()),
                ) as response:
                    if not response.is_success:
                        await response.aread()
                        error = _error(response)
                        if error.status == 404 and seen:
                            return
                        if error.status not in RETRY_STATUSES:
                            raise error
                        raise httpx.RemoteProtocolError(error.error)
                    async for line in response.aiter_lines():
                        event = stream.event(line)
                        if event is None:
                            continue
                        seen = True
                        yield event
                        if stream.follow and stream.job_path and event.type in TERMINAL_EVENTS:
                            return
                if not stream.follow or (stream.job_path and await self._over(stream.job_path)):
                    return
            except httpx.TransportError as exc:
                await asyncio.sleep(stream.dropped(exc, self.retries, self.base_url))

    async def _over(self, job_path: str) -> bool:
        """After a followed job stream ended without its terminal event: is the job over (or deleted)?"""
        try:
            details = _decode((await self._send(_Call("GET", job_path))).content, JobDetails)
        except ApiError as exc:
            if exc.status == 404:
                return True
            raise
        return details.job.status in TERMINAL_STATUSES

    async def bundles(self) -> list[BundleSummary]:
        """Every registered bundle, sorted by id."""
        return (await self._get("/bundles", BundleList)).data

    async def bundle(self, bundle_id: str) -> BundleDetail:
        """One bundle with its manifest, payload files and history."""
        return await self._get(f"/bundles/{_quoted(bundle_id)}", BundleDetail)

    async def reload_bundle(self, bundle_id: str) -> Reloaded | ReloadUnchanged:
        """Re-read a bundle's folder (or register a new folder of that id)."""
        call = _Call("POST", f"/bundles/{_quoted(bundle_id)}/reload", retry=False)
        return _reload_result((await self._send(call)).content)

    async def upload_bundle(self, path: str | Path) -> Uploaded:
        """Upload a bundle directory (zipped here) or zip file; a retry is safe."""
        archive = await asyncio.to_thread(bundle_archive, path)
        files = {"bundle": ("bundle.zip", archive, "application/zip")}
        return _decode((await self._send(_Call("POST", "/bundles/upload", files=files))).content, Uploaded)
