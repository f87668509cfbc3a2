"""Event history of one job and the global feed of job events: JSON, NDJSON and SSE (SPEC §2.14, §2.14a)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get
from litestar.params import FromPath, HeaderParameter, QueryParameter
from litestar.response import Stream

from app.http import params
from app.http.context import Api, ApiDep
from app.http.errors import ApiError, job_not_found
from app.http.schemas import (
    DIGITS_PATTERN,
    LIMIT_PATTERN,
    operation_class,
    responses,
    text_parameter,
)
from app.ops import metrics
from app.store import event_pages
from app.store.database import Database
from app.store.event_store import api_record
from app.wire import EventPage

log = logging.getLogger(__name__)

POLL_INTERVAL_SECONDS = 0.2
KEEPALIVE_SECONDS = 15.0
BATCH = 500
JSON, NDJSON, SSE = "json", "ndjson", "sse"
AFTER_MESSAGE = "after must be a non-negative integer"
LAST_EVENT_ID_MESSAGE = "Last-Event-ID must be a non-negative integer"
FOLLOW_NEEDS_STREAM = "follow=true requires Accept: text/event-stream or application/x-ndjson"
FOLLOW_WITH_LIMIT = "limit cannot be combined with follow=true"
_MEDIA_TYPES = {NDJSON: "application/x-ndjson", SSE: "text/event-stream"}
_KEEPALIVES = {NDJSON: b"\n", SSE: b": keep-alive\n\n"}

# A batch read: the events after a cursor, and whether the stream is over (job gone or terminal).
BatchReader = Callable[[Database, int, int], Awaitable[tuple[list[Any], bool]]]


@dataclass(frozen=True)
class FeedQuery:
    """Validated inputs of an event route."""

    after: int
    limit: int | None
    follow: bool
    mode: str


def representation(accept: str | None) -> str:
    """SSE when Accept names text/event-stream, else NDJSON when it names application/x-ndjson, else JSON."""
    accepted = (accept or "").lower()
    if "text/event-stream" in accepted:
        return SSE
    return NDJSON if "application/x-ndjson" in accepted else JSON


def feed_query(
    *, after: str | None, limit: str | None, follow: str | None, last_event_id: str | None, accept: str | None
) -> FeedQuery:
    """Validate the inputs in the order of the §2.14 table; 400 for the first invalid one."""
    start = params.non_negative(after, AFTER_MESSAGE) or 0
    size = params.optional_limit(limit)
    following = params.flag(follow)
    mode = representation(accept)
    if following and mode == JSON:
        raise ApiError(400, FOLLOW_NEEDS_STREAM)
    if following and size is not None:
        raise ApiError(400, FOLLOW_WITH_LIMIT)
    resume = params.non_negative(last_event_id, LAST_EVENT_ID_MESSAGE)
    return FeedQuery(start if resume is None else resume, size, following, mode)


def _event_json(event: Any) -> bytes:
    # msgspec, the encoder of the JSON representation too (Litestar), and much cheaper than json.dumps.
    return msgspec.json.encode(api_record(event))


def _frame(mode: str, event: Any, cursor: int) -> bytes:
    if mode == NDJSON:
        return _event_json(event) + b"\n"
    kind = event["type"].replace("\r", " ").replace("\n", " ")
    return f"id: {cursor}\nevent: {kind}\ndata: ".encode() + _event_json(event) + b"\n\n"


async def frames(
    api: ApiDep, query: FeedQuery, read: BatchReader, cursor_of: Callable[[Any], int]
) -> AsyncIterator[bytes]:
    """NDJSON lines or SSE frames in order, with no gap and no duplicate; `follow` tails new events."""
    # Every poll continues strictly after the last event sent. A job stream's appends are
    # serialised and the global positions are handed out in commit order (event_store), so a
    # cursor never passes an event that commits later. The stream ends after the job's terminal
    # event (always its last) or when cleanup deleted the job.
    after, remaining = query.after, query.limit
    clock = asyncio.get_running_loop().time
    last_write = clock()
    try:
        while True:
            size = BATCH if remaining is None else min(BATCH, remaining)
            batch, finished = await read(api.db, after, size)
            if batch:
                # One chunk per batch: a write per event costs a syscall (and a TCP segment) each.
                chunk = []
                for event in batch:
                    after = cursor_of(event)
                    chunk.append(_frame(query.mode, event, after))
                yield b"".join(chunk)
                last_write = clock()
            if remaining is not None:
                remaining -= len(batch)
            if finished or remaining == 0:
                return
            if len(batch) == size:
                continue
            if not query.follow:
                return
            await asyncio.sleep(POLL_INTERVAL_SECONDS)
            if clock() - last_write >= KEEPALIVE_SECONDS:
                yield _KEEPALIVES[query.mode]
                last_write = clock()
    except Exception:  # the status line is sent: the only thing left to do is to end the stream
        log.exception("event stream ended by a failure")


def _job_reader(job_id: str) -> BatchReader:
    async def read(db: Database, after: int, size: int) -> tuple[list[Any], bool]:
        page = await event_pages.job_events_after(db, job_id, after, size)
        return ([], True) if page is None else (page.events, page.finished)

    return read


async def _feed_reader(db: Database, after: int, size: int) -> tuple[list[Any], bool]:
    return await event_pages.events_after(db, after, size), False


async def _followed(body: AsyncIterator[bytes], feed: str) -> AsyncIterator[bytes]:
    """`body`, counted in `mirror_neuron_followers{feed}` while the client follows it."""
    with metrics.following(feed):
        try:
            async for chunk in body:
                yield chunk
        finally:
            await body.aclose()  # type: ignore[attr-defined]


def _stream(
    api: Api, query: FeedQuery, read: BatchReader, cursor_of: Callable[[Any], int], feed: str
) -> Stream:
    body = frames(api, query, read, cursor_of)
    return Stream(
        _followed(body, feed) if query.follow else body,
        media_type=_MEDIA_TYPES[query.mode],
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _sequence(event: Any) -> int:
    return int(event["sequence"])


def _position(event: Any) -> int:
    return int(event["position"])


_STREAM_NOTE = " (application/x-ndjson and text/event-stream by Accept)"
AFTER = QueryParameter(schema_extra=text_parameter(DIGITS_PATTERN))
LIMIT = QueryParameter(schema_extra=text_parameter(LIMIT_PATTERN))
FOLLOW = QueryParameter(schema_extra=text_parameter())
LAST_EVENT_ID = HeaderParameter(
    name="Last-Event-ID", required=False, schema_extra=text_parameter(DIGITS_PATTERN)
)
# OpenAPI ignores an `Accept` parameter; the responses' media types document the negotiation.
ACCEPT = HeaderParameter(name="Accept", required=False, include_in_schema=False)


class EventsController(Controller):
    """Event history per job and the global feed."""

    path = "/api/v1"
    tags = ["events"]

    @get(
        "/jobs/{job_id:str}/events",
        operation_id="listJobEvents",
        operation_class=operation_class(streams=True),
        responses=responses({200: (EventPage, "Events in ascending sequence" + _STREAM_NOTE)}, (400, 404)),
    )
    async def job_events(
        self,
        api: ApiDep,
        job_id: FromPath[str],
        after: Annotated[str | None, AFTER] = None,
        limit: Annotated[str | None, LIMIT] = None,
        follow: Annotated[str | None, FOLLOW] = None,
        last_event_id: Annotated[str | None, LAST_EVENT_ID] = None,
        accept: Annotated[str | None, ACCEPT] = None,
    ) -> Response[Any]:
        """A job's events after `after` (or Last-Event-ID); NDJSON/SSE may follow live events."""
        query = feed_query(
            after=after, limit=limit, follow=follow, last_event_id=last_event_id, accept=accept
        )
        if query.mode != JSON:
            if not await event_pages.job_exists(api.db, job_id):
                raise job_not_found(job_id)
            return _stream(api, query, _job_reader(job_id), _sequence, "job")
        wanted = None if query.limit is None else query.limit + 1
        read = await event_pages.job_events_after(api.db, job_id, query.after, wanted)
        if read is None:
            raise job_not_found(job_id)
        found = read.events
        page = found if query.limit is None else found[: query.limit]
        more = query.limit is not None and len(found) > query.limit
        return Response(
            {"data": [api_record(e) for e in page], "next_after": page[-1]["sequence"] if more and page else None}
        )

    @get(
        "/events",
        operation_id="listEvents",
        operation_class=operation_class(streams=True),
        responses=responses({200: (EventPage, "Job events in ascending position" + _STREAM_NOTE)}, (400,)),
    )
    async def feed(
        self,
        api: ApiDep,
        after: Annotated[str | None, AFTER] = None,
        limit: Annotated[str | None, LIMIT] = None,
        follow: Annotated[str | None, FOLLOW] = None,
        last_event_id: Annotated[str | None, LAST_EVENT_ID] = None,
        accept: Annotated[str | None, ACCEPT] = None,
    ) -> Response[Any]:
        """Every job's events in position order after `after`; never skips a later-committing event."""
        query = feed_query(
            after=after, limit=limit, follow=follow, last_event_id=last_event_id, accept=accept
        )
        if query.mode != JSON:
            return _stream(api, query, _feed_reader, _position, "global")
        page = await event_pages.events_after(api.db, query.after, query.limit or 100)
        return Response(
            {"data": [api_record(e) for e in page], "next_after": page[-1]["position"] if page else None}
        )
