"""The Python client of the MirrorNeuron API (SPEC §2, Appendix C): `Client` and `AsyncClient` on httpx.

Every endpoint is a method returning a typed result (the msgspec Structs of `app.wire`); every error
answer raises `ApiError` with the status and the server's `error` and `errors`. Reads are retried on a
dropped connection or a 502/503/504; a write is retried only when it carries an `Idempotency-Key`
(the server then answers a retry with the first result, SPEC §2.7, C.5.9). `wait` and the `follow_*`
iterators read the NDJSON event streams and resume from the last event seen when a connection drops.

    with Client("http://127.0.0.1:4000", token="...") as mn:
        job = mn.submit(manifest, idempotency_key="nightly-2026-12-06")
        details = mn.wait(job.job_id, timeout=600)

How it is built: each endpoint is written once, as the `Request` it sends (method, path, parameters,
body, how to decode the answer) or the `_Stream` it reads, in a room per part of the API
(`SystemEndpoints`, `JobEndpoints`, `EventEndpoints`, `BundleEndpoints`). The `@endpoint` and
`@event_stream` markers turn each description into a method of both clients: `Client` sends it and
returns the result, `AsyncClient` returns an awaitable (or an async iterator). The two clients hold only
their transport (`_send`, `_follow`) and the operations of several requests (paging, `wait`, upload).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import io
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload
from urllib.parse import quote

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
P = ParamSpec("P")
TransportT = TypeVar("TransportT", httpx.BaseTransport, httpx.AsyncBaseTransport)


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
class Request(Generic[T]):
    """One request: what to send, how to read a 2xx answer, and whether a retry is safe."""

    method: str
    path: str
    decode: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] | None = None
    files: dict[str, Any] | None = None
    retry: bool = True

    def options(self) -> dict[str, Any]:
        """What httpx sends besides the method and the path."""
        return {"params": self.params, "json": self.json, "headers": self.headers, "files": self.files}


def _decode(content: bytes, kind: type[T]) -> T:
    return msgspec.json.decode(content, type=kind)


def _read(kind: type[T]) -> Callable[[httpx.Response], T]:
    """Decode the answer as `kind`."""
    return lambda response: _decode(response.content, kind)


def _status_is(word: str) -> Callable[[httpx.Response], bool]:
    """True when the answer's `status` is `word`."""
    return lambda response: bool(response.json()["status"] == word)


def _get(path: str, decode: Callable[[httpx.Response], T], params: dict[str, Any] | None = None) -> Request[T]:
    return Request("GET", path, decode, params=params)


def _write(
    method: str, path: str, decode: Callable[[httpx.Response], T], *, idempotency_key: str | None, **kwargs: Any
) -> Request[T]:
    """A write, retried only when it carries an Idempotency-Key."""
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
    return Request(method, path, decode, headers=headers, retry=idempotency_key is not None, **kwargs)


def _quoted(value: str) -> str:
    return quote(value, safe="")


def _job_path(job_id: str) -> str:
    return f"/jobs/{_quoted(job_id)}"


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


def _submission(response: httpx.Response) -> Submission:
    data = response.json()
    replayed = response.headers.get("Idempotent-Replayed") == "true"
    return Submission(data["job_id"], data["status"], replayed)


def _reload_result(response: httpx.Response) -> Reloaded | ReloadUnchanged:
    data = msgspec.json.decode(response.content)
    if data.get("reloaded"):
        return msgspec.convert(data, Reloaded)
    return msgspec.convert(data, ReloadUnchanged)


def _job_over(response: httpx.Response) -> bool:
    return _decode(response.content, JobDetails).job.status in TERMINAL_STATUSES


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


def _upload(archive: bytes) -> Request[Uploaded]:
    """Unchanged content appends nothing, so a retry is safe."""
    files = {"bundle": ("bundle.zip", archive, "application/zip")}
    return Request("POST", "/bundles/upload", _read(Uploaded), files=files)


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
    seen: bool = False

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
        self.seen = True
        return event

    def ends_with(self, event: EventRecord) -> bool:
        """True after the terminal event of a followed job stream."""
        return self.follow and self.job_path is not None and event.type in TERMINAL_EVENTS

    def raise_unless_deleted(self, response: httpx.Response) -> None:
        """A refused (re)connection: returns when the job was deleted by cleanup while we followed; a
        502/503/504 raises as a dropped link (to reconnect), anything else as ApiError."""
        error = _error(response)
        if error.status == 404 and self.seen:
            return
        if error.status not in RETRY_STATUSES:
            raise error
        raise httpx.RemoteProtocolError(error.error)

    def dropped(self, exc: Exception, retries: int, base_url: str) -> float:
        """The pause before reconnecting, or raise when the link stays down or the deadline passed."""
        self.read_timeout()
        self.failures += 1
        if self.failures > retries:
            raise _unreachable(base_url, exc) from exc
        return _backoff(self.failures)


def _job_stream(job_id: str, after: int, *, follow: bool, deadline: float | None = None) -> _Stream:
    return _Stream(f"{_job_path(job_id)}/events", "sequence", after, follow=follow, deadline=deadline)


def _waiting(job_id: str, timeout: float | None) -> tuple[Progress, _Stream]:
    """What `wait` counts, and the followed stream that ends at the job's terminal event or deadline."""
    progress = Progress(job_id)
    deadline = None if timeout is None else progress.started + timeout
    return progress, _job_stream(job_id, 0, follow=True, deadline=deadline)


def _waited(job_id: str, details: JobDetails) -> JobDetails:
    if details.job.status not in TERMINAL_STATUSES:
        raise ApiError(404, f"job {job_id} was not found")  # the stream ended: the job was cleaned up
    return details


# ------------------------------------------------------------------ one description, a method of both clients


def _bound(client: Any, run: Callable[[Any], Any], describe: Callable[..., Any]) -> Callable[..., Any]:
    """`describe` as a method of `client` that hands what it describes to `run` (awaited when `run` is a
    coroutine function, so that an async call describes its request when awaited, as an `async def` does)."""
    if inspect.iscoroutinefunction(run):

        @functools.wraps(describe)
        async def awaited(*args: Any, **kwargs: Any) -> Any:
            return await run(describe(client, *args, **kwargs))

        return awaited

    @functools.wraps(describe)
    def method(*args: Any, **kwargs: Any) -> Any:
        return run(describe(client, *args, **kwargs))

    return method


class endpoint(Generic[P, T]):
    """Marks a method that describes one request: on `Client` it sends it and returns the result, on
    `AsyncClient` it returns an awaitable of the result."""

    def __init__(self, describe: Callable[Concatenate[Any, P], Request[T]]) -> None:
        self.describe = describe
        self.__doc__ = describe.__doc__

    @overload
    def __get__(self, client: None, owner: type[Any]) -> endpoint[P, T]: ...
    @overload
    def __get__(self, client: Client, owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(self, client: AsyncClient, owner: type[Any]) -> Callable[P, Awaitable[T]]: ...
    def __get__(self, client: Any, owner: type[Any]) -> Any:
        return self if client is None else _bound(client, client._send, self.describe)


class event_stream(Generic[P]):
    """Marks a method that describes an NDJSON event stream: an iterator on `Client`, an async iterator
    on `AsyncClient`, resumed after the last event seen when the connection drops."""

    def __init__(self, describe: Callable[Concatenate[Any, P], _Stream]) -> None:
        self.describe = describe
        self.__doc__ = describe.__doc__

    @overload
    def __get__(self, client: None, owner: type[Any]) -> event_stream[P]: ...
    @overload
    def __get__(self, client: Client, owner: type[Any]) -> Callable[P, Iterator[EventRecord]]: ...
    @overload
    def __get__(self, client: AsyncClient, owner: type[Any]) -> Callable[P, AsyncIterator[EventRecord]]: ...
    def __get__(self, client: Any, owner: type[Any]) -> Any:
        return self if client is None else _bound(client, client._follow, self.describe)


# ------------------------------------------------------------------ the endpoints, room by room


class SystemEndpoints:
    """Health, readiness, the summary, the nodes and the OpenAPI document."""

    @endpoint
    def health(self) -> Request[bool]:
        """True when the process serves HTTP."""
        return _get("/health", _status_is("ok"))

    @endpoint
    def ready(self) -> Request[bool]:
        """True when the database answers and is migrated (503 raises ApiError)."""
        return _get("/health/ready", _status_is("ready"))

    @endpoint
    def summary(self) -> Request[SystemSummary]:
        """Nodes, recent jobs and counts."""
        return _get("/system/summary", _read(SystemSummary))

    @endpoint
    def nodes(self) -> Request[list[NodeSummary]]:
        """Every node, sorted by name."""
        return _get("/nodes", lambda response: _decode(response.content, NodeList).data)

    @endpoint
    def openapi(self) -> Request[dict[str, Any]]:
        """The served OpenAPI document."""
        return _get("/schema/openapi.json", lambda response: dict(response.json()))


class JobEndpoints:
    """Submitting, listing, reading and controlling jobs."""

    @endpoint
    def submit(
        self,
        manifest: dict[str, Any] | None = None,
        *,
        bundle_id: str | None = None,
        initial_inputs: Any = None,
        bundle_path: str | None = None,
        idempotency_key: str | None = None,
    ) -> Request[Submission]:
        """Submit a manifest, a registered bundle, or an uploaded bundle version (`bundle_path`)."""
        body = _submit_body(manifest, bundle_id, initial_inputs, bundle_path)
        return _write("POST", "/jobs", _submission, json=body, idempotency_key=idempotency_key)

    @endpoint
    def jobs(
        self,
        *,
        status: str | list[str] | None = None,
        graph_id: str | None = None,
        include_terminal: bool | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Request[JobList]:
        """One page of jobs, most recently updated first; continue with its `next_cursor`."""
        return _get("/jobs", _read(JobList), _list_params(status, graph_id, include_terminal, limit, cursor))

    @endpoint
    def job(self, job_id: str) -> Request[JobDetails]:
        """Record, summary, agents, 25 newest events and sandboxes of one job."""
        return _get(_job_path(job_id), _read(JobDetails))

    @endpoint
    def cancel(self, job_id: str, *, idempotency_key: str | None = None) -> Request[StatusChange]:
        """Cancel a live job (a cancelled one answers the same)."""
        return _write("POST", f"{_job_path(job_id)}/cancel", _read(StatusChange), idempotency_key=idempotency_key)

    @endpoint
    def pause(self, job_id: str, *, idempotency_key: str | None = None) -> Request[StatusChange]:
        """Pause a running job."""
        return _write("POST", f"{_job_path(job_id)}/pause", _read(StatusChange), idempotency_key=idempotency_key)

    @endpoint
    def resume(self, job_id: str, *, idempotency_key: str | None = None) -> Request[StatusChange]:
        """Resume a paused job."""
        return _write("POST", f"{_job_path(job_id)}/resume", _read(StatusChange), idempotency_key=idempotency_key)

    @endpoint
    def message(
        self, job_id: str, agent_id: str, message: dict[str, Any] | None = None, *, idempotency_key: str | None = None
    ) -> Request[MessageAccepted]:
        """Deliver an external message to an agent of a running or paused job."""
        body = {"agent_id": agent_id, "message": message if message is not None else {}}
        path = f"{_job_path(job_id)}/messages"
        return _write("POST", path, _read(MessageAccepted), json=body, idempotency_key=idempotency_key)

    @endpoint
    def cleanup(
        self, *, all: bool = False, older_than: int | None = None, idempotency_key: str | None = None
    ) -> Request[Cleanup]:
        """Delete terminal jobs (with `all`, cancel and delete live ones too)."""
        params: dict[str, Any] = {"all": "true"} if all else {}
        if older_than is not None:
            params["older_than"] = older_than
        return _write("POST", "/jobs/cleanup", _read(Cleanup), params=params, idempotency_key=idempotency_key)


class EventEndpoints:
    """A job's events and the global feed: pages, and streams that resume after a drop."""

    @endpoint
    def events(self, job_id: str, *, after: int = 0, limit: int | None = None) -> Request[EventPage]:
        """One page of a job's events in ascending sequence; continue after `next_after`."""
        params: dict[str, Any] = {"after": after} if limit is None else {"after": after, "limit": limit}
        return _get(f"{_job_path(job_id)}/events", _read(EventPage), params)

    @event_stream
    def iter_events(self, job_id: str, *, after: int = 0) -> _Stream:
        """Every event of a job after `after`, streamed (constant memory), resumed if the link drops."""
        return _job_stream(job_id, after, follow=False)

    @event_stream
    def follow_events(self, job_id: str, *, after: int = 0) -> _Stream:
        """A job's events as they commit, until its terminal event (or its cleanup)."""
        return _job_stream(job_id, after, follow=True)

    @endpoint
    def feed(self, *, after: int = 0, limit: int = 100) -> Request[EventPage]:
        """One page of the global feed of job events, in ascending position."""
        return _get("/events", _read(EventPage), {"after": after, "limit": limit})

    @event_stream
    def follow_feed(self, *, after: int = 0) -> _Stream:
        """Every job event after position `after`, then each new one, forever; store `event.position`
        to resume later. A dropped connection is resumed from the last position seen."""
        return _Stream("/events", "position", after, follow=True)


class BundleEndpoints:
    """Registered bundles and their reload (the upload is on each client: it zips first)."""

    @endpoint
    def bundles(self) -> Request[list[BundleSummary]]:
        """Every registered bundle, sorted by id."""
        return _get("/bundles", lambda response: _decode(response.content, BundleList).data)

    @endpoint
    def bundle(self, bundle_id: str) -> Request[BundleDetail]:
        """One bundle with its manifest, payload files and history."""
        return _get(f"/bundles/{_quoted(bundle_id)}", _read(BundleDetail))

    @endpoint
    def reload_bundle(self, bundle_id: str) -> Request[Reloaded | ReloadUnchanged]:
        """Re-read a bundle's folder (or register a new folder of that id)."""
        return Request("POST", f"/bundles/{_quoted(bundle_id)}/reload", _reload_result, retry=False)


class _ClientBase(SystemEndpoints, JobEndpoints, EventEndpoints, BundleEndpoints, Generic[TransportT]):
    """Every endpoint room, the settings and the retry rule common to both clients; each client opens
    its own httpx pool (`_open`)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:4000",
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        transport: TransportT | None = None,
    ) -> None:
        self.base_url = _base(base_url)
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self._open(transport)

    def _open(self, transport: TransportT | None) -> None:
        raise NotImplementedError

    def _answer(
        self, request: Request[T], attempt: int, sent: httpx.Response | httpx.TransportError
    ) -> httpx.Response | None:
        """The 2xx answer to decode, or None to retry after `_backoff(attempt)`; raises ApiError when
        the answer is final (an error, or no retry allowed or left)."""
        status = None if isinstance(sent, httpx.TransportError) else sent.status_code
        if isinstance(sent, httpx.Response) and sent.is_success:
            return sent
        if request.retry and attempt < self.retries and (status is None or status in RETRY_STATUSES):
            return None
        if isinstance(sent, httpx.TransportError):
            raise _unreachable(self.base_url, sent) from sent
        raise _error(sent)

    def _stream_timeout(self, stream: _Stream) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, read=stream.read_timeout())


# ------------------------------------------------------------------ the synchronous client


class Client(_ClientBase[httpx.BaseTransport]):
    """A blocking client; use it as a context manager or call `close()`."""

    def _open(self, transport: httpx.BaseTransport | None) -> None:
        self._http = httpx.Client(
            base_url=self.base_url, headers=_auth(self.token), timeout=self.timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _send(self, request: Request[T]) -> T:
        attempt = 0
        while True:
            sent: httpx.Response | httpx.TransportError
            try:
                sent = self._http.request(request.method, API + request.path, **request.options())
            except httpx.TransportError as exc:
                sent = exc
            if (answer := self._answer(request, attempt, sent)) is not None:
                return request.decode(answer)
            time.sleep(_backoff(attempt))
            attempt += 1

    def _follow(self, stream: _Stream) -> Iterator[EventRecord]:
        while True:
            try:
                with self._http.stream(
                    "GET", API + stream.path, params=stream.params(), headers={"Accept": NDJSON},
                    timeout=self._stream_timeout(stream),
                ) as response:
                    if not response.is_success:
                        response.read()
                        stream.raise_unless_deleted(response)
                        return  # the job was deleted by cleanup while we followed
                    for line in response.iter_lines():
                        if (event := stream.event(line)) is not None:
                            yield event
                            if stream.ends_with(event):
                                return
                if not stream.follow or (stream.job_path and self._over(stream.job_path)):
                    return
            except httpx.TransportError as exc:
                time.sleep(stream.dropped(exc, self.retries, self.base_url))

    def _over(self, job_path: str) -> bool:
        """After a followed job stream ended without its terminal event: is the job over (or deleted)?"""
        try:
            return self._send(_get(job_path, _job_over))
        except ApiError as exc:
            if exc.status == 404:
                return True
            raise

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

    def iter_feed(self, *, after: int = 0, page_size: int = 1000) -> Iterator[EventRecord]:
        """Every job event committed so far after position `after`, page after page."""
        while True:
            page = self.feed(after=after, limit=page_size)
            yield from page.data
            if page.next_after is None:
                return
            after = page.next_after

    def wait(
        self, job_id: str, *, timeout: float | None = None, on_progress: Callable[[Progress], None] | None = None
    ) -> JobDetails:
        """Follow the job's events until its terminal event; its details then. TimeoutError after `timeout` s."""
        progress, stream = _waiting(job_id, timeout)
        for event in self._follow(stream):
            progress.add(event)
            if on_progress is not None:
                on_progress(progress)
        return _waited(job_id, self.job(job_id))

    def upload_bundle(self, path: str | Path) -> Uploaded:
        """Upload a bundle directory (zipped here) or zip file; unchanged content appends nothing, so a
        retry is safe."""
        return self._send(_upload(bundle_archive(path)))


# ------------------------------------------------------------------ the asynchronous client


class AsyncClient(_ClientBase[httpx.AsyncBaseTransport]):
    """The same API for asyncio; use it with `async with` or call `aclose()`."""

    def _open(self, transport: httpx.AsyncBaseTransport | None) -> None:
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=_auth(self.token), timeout=self.timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _send(self, request: Request[T]) -> T:
        attempt = 0
        while True:
            sent: httpx.Response | httpx.TransportError
            try:
                sent = await self._http.request(request.method, API + request.path, **request.options())
            except httpx.TransportError as exc:
                sent = exc
            if (answer := self._answer(request, attempt, sent)) is not None:
                return request.decode(answer)
            await asyncio.sleep(_backoff(attempt))
            attempt += 1

    async def _follow(self, stream: _Stream) -> AsyncIterator[EventRecord]:
        while True:
            try:
                async with self._http.stream(
                    "GET", API + stream.path, params=stream.params(), headers={"Accept": NDJSON},
                    timeout=self._stream_timeout(stream),
                ) as response:
                    if not response.is_success:
                        await response.aread()
                        stream.raise_unless_deleted(response)
                        return  # the job was deleted by cleanup while we followed
                    async for line in response.aiter_lines():
                        if (event := stream.event(line)) is not None:
                            yield event
                            if stream.ends_with(event):
                                return
                if not stream.follow or (stream.job_path and await self._over(stream.job_path)):
                    return
            except httpx.TransportError as exc:
                await asyncio.sleep(stream.dropped(exc, self.retries, self.base_url))

    async def _over(self, job_path: str) -> bool:
        """After a followed job stream ended without its terminal event: is the job over (or deleted)?"""
        try:
            return await self._send(_get(job_path, _job_over))
        except ApiError as exc:
            if exc.status == 404:
                return True
            raise

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

    async def iter_feed(self, *, after: int = 0, page_size: int = 1000) -> AsyncIterator[EventRecord]:
        """Every job event committed so far after position `after`, page after page."""
        while True:
            page = await self.feed(after=after, limit=page_size)
            for event in page.data:
                yield event
            if page.next_after is None:
                return
            after = page.next_after

    async def wait(
        self, job_id: str, *, timeout: float | None = None, on_progress: Callable[[Progress], None] | None = None
    ) -> JobDetails:
        """Follow the job's events until its terminal event; its details then. TimeoutError after `timeout` s."""
        progress, stream = _waiting(job_id, timeout)
        async for event in self._follow(stream):
            progress.add(event)
            if on_progress is not None:
                on_progress(progress)
        return _waited(job_id, await self.job(job_id))

    async def upload_bundle(self, path: str | Path) -> Uploaded:
        """Upload a bundle directory (zipped here, off the event loop) or zip file; a retry is safe."""
        return await self._send(_upload(await asyncio.to_thread(bundle_archive, path)))
