"""Event history and the global feed in JSON, NDJSON and SSE, with follow (SPEC §2.14, §2.14a)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from app.http import events as event_routes
from app.http.context import Api
from app.http.events import FeedQuery, frames
from app.service import Service
from app.store.database import Database
from tests.api.conftest import (
    BASE,
    event_count,
    job_events,
    lifecycle_manifest,
    register_bundle,
    run,
    submit,
    write_bundle,
)

SSE = {"accept": "text/event-stream"}
NDJSON = {"accept": "application/x-ndjson"}


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_routes, "POLL_INTERVAL_SECONDS", 0.02)


async def _running_job(client: httpx.AsyncClient, db: Database, service: Service, messages: int = 0) -> str:
    job_id = await submit(client, lifecycle_manifest())
    await run(db, service, job_id)
    for i in range(messages):
        response = await client.post(
            f"{BASE}/jobs/{job_id}/messages", json={"agent_id": "sink", "message": {"i": i}}
        )
        assert response.status_code == 202
    return job_id


def _sse(text: str) -> list[dict[str, Any]]:
    frames_ = [f for f in text.split("\n\n") if f]
    parsed = []
    for frame in frames_:
        lines = frame.split("\n")
        assert [line.split(":", 1)[0] for line in lines] == ["id", "event", "data"], frame
        event = json.loads(lines[2][len("data: ") :])
        assert lines[1] == f"event: {event['type']}"
        parsed.append({"id": int(lines[0][len("id: ") :]), "event": event})
    return parsed


def _ndjson(text: str) -> list[dict[str, Any]]:
    assert text.endswith("\n")
    return [json.loads(line) for line in text.split("\n") if line]


async def test_json_history_and_paging(client: httpx.AsyncClient, db: Database, service: Service) -> None:
    job_id = await _running_job(client, db, service, messages=5)
    everything = await job_events(client, job_id)
    assert [e["sequence"] for e in everything] == list(range(1, 11))
    assert all(e["job_id"] == job_id for e in everything)
    response = await client.get(f"{BASE}/jobs/{job_id}/events")
    assert response.json()["next_after"] is None
    page = (await client.get(f"{BASE}/jobs/{job_id}/events?limit=4")).json()
    assert [e["sequence"] for e in page["data"]] == [1, 2, 3, 4]
    assert page["next_after"] == 4
    page = (await client.get(f"{BASE}/jobs/{job_id}/events?limit=4&after=4")).json()
    assert [e["sequence"] for e in page["data"]] == [5, 6, 7, 8] and page["next_after"] == 8
    page = (await client.get(f"{BASE}/jobs/{job_id}/events?limit=4&after=8")).json()
    assert [e["sequence"] for e in page["data"]] == [9, 10] and page["next_after"] is None
    exact = (await client.get(f"{BASE}/jobs/{job_id}/events?limit=2&after=8")).json()
    assert [e["sequence"] for e in exact["data"]] == [9, 10] and exact["next_after"] is None
    empty = (await client.get(f"{BASE}/jobs/{job_id}/events?after=10&limit=5")).json()
    assert empty == {"data": [], "next_after": None}
    resumed = (
        await client.get(f"{BASE}/jobs/{job_id}/events?after=1", headers={"Last-Event-ID": "7"})
    ).json()
    assert [e["sequence"] for e in resumed["data"]] == [8, 9, 10]
    assert everything == (await client.get(f"{BASE}/jobs/{job_id}/events?after=0")).json()["data"]


@pytest.mark.parametrize(
    ("query", "headers", "error"),
    [
        ("?after=-1", {}, "after must be a non-negative integer"),
        ("?after=+1", {}, "after must be a non-negative integer"),
        ("?after=1e2", {}, "after must be a non-negative integer"),
        ("?after=%201", {}, "after must be a non-negative integer"),
        ("?after=", {}, "after must be a non-negative integer"),
        ("?limit=0", {}, "limit must be an integer between 1 and 1000"),
        ("?limit=1001", {}, "limit must be an integer between 1 and 1000"),
        ("?limit=x", NDJSON, "limit must be an integer between 1 and 1000"),
        ("?follow=true", {}, "follow=true requires Accept: text/event-stream or application/x-ndjson"),
        (
            "?follow=1",
            {"accept": "application/json"},
            "follow=true requires Accept: text/event-stream or application/x-ndjson",
        ),
        ("?follow=true&limit=5", SSE, "limit cannot be combined with follow=true"),
        ("?follow=1&limit=5", NDJSON, "limit cannot be combined with follow=true"),
        ("", {"Last-Event-ID": "-3"}, "Last-Event-ID must be a non-negative integer"),
        ("", {"Last-Event-ID": "abc", **SSE}, "Last-Event-ID must be a non-negative integer"),
    ],
)
async def test_event_query_validation(
    client: httpx.AsyncClient, db: Database, service: Service, query: str, headers: dict[str, str], error: str
) -> None:
    job_id = await _running_job(client, db, service)
    for path in (f"/jobs/{job_id}/events", "/events"):
        response = await client.get(BASE + path + query, headers=headers)
        assert response.status_code == 400, path
        assert response.json() == {"error": error}
        assert response.headers["content-type"].startswith("application/json")


async def test_follow_false_values_need_no_stream(
    client: httpx.AsyncClient, db: Database, service: Service
) -> None:
    job_id = await _running_job(client, db, service)
    for value in ("false", "0", "yes", "TRUE"):
        response = await client.get(f"{BASE}/jobs/{job_id}/events?follow={value}&limit=2")
        assert response.status_code == 200


async def test_ndjson_and_sse_without_follow(
    client: httpx.AsyncClient, db: Database, service: Service
) -> None:
    job_id = await _running_job(client, db, service, messages=3)
    everything = await job_events(client, job_id)
    response = await client.get(f"{BASE}/jobs/{job_id}/events", headers=NDJSON)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert _ndjson(response.text) == everything
    response = await client.get(f"{BASE}/jobs/{job_id}/events?after=2&limit=3", headers=NDJSON)
    assert [e["sequence"] for e in _ndjson(response.text)] == [3, 4, 5]
    response = await client.get(
        f"{BASE}/jobs/{job_id}/events", headers={"accept": "text/event-stream, application/x-ndjson"}
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    parsed = _sse(response.text)
    assert [p["event"] for p in parsed] == everything
    assert [p["id"] for p in parsed] == [e["sequence"] for e in everything]
    for line in response.text.split("\n\n")[:-1]:
        assert line.count("\n") == 2
    response = await client.get(f"{BASE}/jobs/{job_id}/events", headers={**SSE, "Last-Event-ID": "6"})
    assert [p["id"] for p in _sse(response.text)] == [7, 8]


async def test_sse_follow_until_the_terminal_event(
    client: httpx.AsyncClient, db: Database, service: Service
) -> None:
    job_id = await _running_job(client, db, service)
    follower = asyncio.create_task(
        client.get(f"{BASE}/jobs/{job_id}/events?follow=true&after=2", headers=SSE)
    )
    await asyncio.sleep(0.2)
    for i in range(3):
        await client.post(f"{BASE}/jobs/{job_id}/messages", json={"agent_id": "sink", "message": {"i": i}})
        await asyncio.sleep(0.05)
    await client.post(f"{BASE}/jobs/{job_id}/cancel")
    response = await asyncio.wait_for(follower, 10)
    assert response.status_code == 200
    parsed = _sse(response.text)
    everything = await job_events(client, job_id)
    assert [p["event"] for p in parsed] == everything[2:]
    assert [p["id"] for p in parsed] == list(range(3, len(everything) + 1))
    assert parsed[-1]["event"]["type"] == "job_cancelled"


async def test_ndjson_follow_of_a_terminal_job_ends_after_the_backfill(
    client: httpx.AsyncClient, db: Database, service: Service
) -> None:
    job_id = await _running_job(client, db, service, messages=2)
    await client.post(f"{BASE}/jobs/{job_id}/cancel")
    everything = await job_events(client, job_id)
    response = await asyncio.wait_for(client.get(f"{BASE}/jobs/{job_id}/events?follow=1", headers=NDJSON), 10)
    assert _ndjson(response.text) == everything
    past_the_end = await asyncio.wait_for(
        client.get(f"{BASE}/jobs/{job_id}/events?follow=1&after={len(everything)}", headers=NDJSON), 10
    )
    assert past_the_end.text == ""


async def test_follow_ends_when_the_job_is_cleaned_up(
    client: httpx.AsyncClient, db: Database, service: Service
) -> None:
    job_id = await _running_job(client, db, service)
    follower = asyncio.create_task(client.get(f"{BASE}/jobs/{job_id}/events?follow=true", headers=NDJSON))
    await asyncio.sleep(0.2)
    response = await client.post(f"{BASE}/jobs/cleanup?all=true")
    assert response.json()["deleted_jobs"] == [job_id]
    followed = await asyncio.wait_for(follower, 10)
    lines = _ndjson(followed.text)
    assert [e["sequence"] for e in lines] == list(range(1, len(lines) + 1))
    assert lines[:5] == [e for e in lines if e["sequence"] <= 5]


@pytest.mark.parametrize(("headers", "keepalive"), [(SSE, ": keep-alive\n\n"), (NDJSON, "\n")])
async def test_keepalives_while_idle(
    client: httpx.AsyncClient,
    db: Database,
    service: Service,
    monkeypatch: pytest.MonkeyPatch,
    headers: dict[str, str],
    keepalive: str,
) -> None:
    monkeypatch.setattr(event_routes, "KEEPALIVE_SECONDS", 0.05)
    job_id = await _running_job(client, db, service)
    follower = asyncio.create_task(
        client.get(f"{BASE}/jobs/{job_id}/events?follow=true&after=5", headers=headers)
    )
    await asyncio.sleep(0.4)
    await client.post(f"{BASE}/jobs/{job_id}/cancel")
    text = (await asyncio.wait_for(follower, 10)).text
    assert text.startswith(keepalive * 2)
    payload = text.replace(keepalive, "\n" if keepalive == "\n" else "")
    if headers is SSE:
        assert [p["event"]["type"] for p in _sse(payload)] == ["job_cancelled"]
    else:
        assert [e["type"] for e in _ndjson(payload.lstrip("\n"))] == ["job_cancelled"]


async def test_global_feed(client: httpx.AsyncClient, db: Database, service: Service, tmp_path: Any) -> None:
    first = await submit(client, lifecycle_manifest("one"))
    await register_bundle(service, write_bundle(tmp_path, "b", lifecycle_manifest("bundled")))
    second = await _running_job(client, db, service)
    await client.post(f"{BASE}/jobs/{first}/cancel")
    await client.post(f"{BASE}/jobs/{second}/cancel")
    everything = (await client.get(f"{BASE}/events?limit=1000")).json()
    data = everything["data"]
    positions = [e["position"] for e in data]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert {e["job_id"] for e in data} == {first, second}
    assert everything["next_after"] == positions[-1]
    assert len(data) == len(await job_events(client, first)) + len(await job_events(client, second))
    assert await event_count(db) == len(data) + 1  # the bundle_registered event stays internal
    assert [e["job_id"] for e in data[-2:]] == [first, second]
    default = (await client.get(f"{BASE}/events")).json()
    assert default["data"] == data[:100]
    page = (await client.get(f"{BASE}/events?limit=3")).json()
    assert page["data"] == data[:3] and page["next_after"] == positions[2]
    rest = (await client.get(f"{BASE}/events?after={page['next_after']}&limit=1000")).json()
    assert rest["data"] == data[3:]
    assert (await client.get(f"{BASE}/events?after={positions[-1]}")).json() == {
        "data": [],
        "next_after": None,
    }
    ndjson = await client.get(f"{BASE}/events", headers=NDJSON)
    assert _ndjson(ndjson.text) == data
    limited = await client.get(f"{BASE}/events?limit=2&after={positions[0]}", headers=NDJSON)
    assert _ndjson(limited.text) == data[1:3]
    sse = await client.get(f"{BASE}/events", headers={**SSE, "Last-Event-ID": str(positions[1])})
    parsed = _sse(sse.text)
    assert [p["id"] for p in parsed] == positions[2:]
    assert [p["event"] for p in parsed] == data[2:]


async def test_global_follow_tails_new_events(
    client: httpx.AsyncClient, db: Database, service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_routes, "KEEPALIVE_SECONDS", 0.05)
    from app.config import Settings

    api = Api(Settings(), db, service, "test-node")
    first = await submit(client, lifecycle_manifest("one"))
    stream = frames(
        api,
        FeedQuery(after=0, limit=None, follow=True, mode="sse"),
        event_routes._feed_reader,
        event_routes._position,
    )
    received: list[bytes] = [await anext(stream)]
    second = await submit(client, lifecycle_manifest("two"))
    while len([c for c in received if c.startswith(b"id:")]) < 2:
        received.append(await asyncio.wait_for(anext(stream), 5))
    while not received[-1].startswith(b": keep-alive"):
        received.append(await asyncio.wait_for(anext(stream), 5))
    await stream.aclose()
    ids = [json.loads(c.split(b"data: ", 1)[1])["job_id"] for c in received if c.startswith(b"id:")]
    assert ids == [first, second]


async def test_every_representation_carries_hash_alg_after_hash(
    client: httpx.AsyncClient, db: Database, service: Service
) -> None:
    # SPEC C.1.3: `hash_alg` is in the record right after `hash`, in JSON, NDJSON, SSE, the global
    # feed and a job's recent events; events written by this version are jcs-sha256, and a payload
    # is stored as RFC 8785 text (the external message's 1.0 and 1e16 read back as 1 and 1e16).
    job_id = await _running_job(client, db, service)
    response = await client.post(
        f"{BASE}/jobs/{job_id}/messages", json={"agent_id": "sink", "message": {"ratio": 1.0, "big": 1e16}}
    )
    assert response.status_code == 202
    page = (await client.get(f"{BASE}/jobs/{job_id}/events")).json()["data"]
    ndjson = _ndjson((await client.get(f"{BASE}/jobs/{job_id}/events", headers=NDJSON)).text)
    sse = [f["event"] for f in _sse((await client.get(f"{BASE}/jobs/{job_id}/events", headers=SSE)).text)]
    feed = [e for e in (await client.get(f"{BASE}/events?limit=1000")).json()["data"] if e["job_id"] == job_id]
    recent = (await client.get(f"{BASE}/jobs/{job_id}")).json()["recent_events"]
    for records in (page, ndjson, sse, feed, recent):
        assert records and all(list(r)[-2:] == ["hash", "hash_alg"] for r in records)
        assert {r["hash_alg"] for r in records} == {"jcs-sha256"}
    delivered = [e for e in page if e["type"] == "message_delivered" and e["agent_id"] == "sink"][-1]
    raw = (await client.get(f"{BASE}/jobs/{job_id}/events?after={delivered['sequence'] - 1}&limit=1")).text
    assert '{"big":10000000000000000,"ratio":1}' in raw, raw


async def test_the_openapi_document_names_hash_alg(client: httpx.AsyncClient) -> None:
    doc = (await client.get(f"{BASE}/schema/openapi.json")).json()
    record = doc["components"]["schemas"]["EventRecord"]
    assert "hash_alg" in record["required"]
    assert record["properties"]["hash_alg"]["enum"] == ["jcs-sha256", "pyjson-sha256"]
