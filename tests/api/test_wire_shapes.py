"""The answers the read model builds as dicts and the `app.wire` Structs that document them stay one
shape (issue 14 item 6; why there are two is said at the top of `app/http/schemas.py`).

One scenario on each database reaches every documented JSON answer of the API, with every
optional part filled in at least once (a bundle with a rejected reload, an agent holding an
executor lease, a sandbox, a job from a bundle, a second page…). Each answer is checked against
the Struct its route documents for that status: no key the Struct lacks, every required field
present, every value of the field's type. Then the other direction: every field of every Struct
the documented answers can reach was present in some answer. A field added on one side only
fails here.
"""

from __future__ import annotations

import time
import typing
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import msgspec
import msgspec.inspect as mi
import pytest
from litestar import Litestar

from app.config import Settings
from app.domain.events import NewEvent
from app.domain.job import CommitStep, RecordAgentEvents
from app.domain.messages import received_payload
from app.http.app import create_app
from app.service import Service
from app.store.database import Database
from tests.api.conftest import (
    BASE,
    NODE,
    ClientFactory,
    add_node,
    executor_manifest,
    job_events,
    lifecycle_manifest,
    register_bundle,
    run,
    write_bundle,
)
from tests.bundle_zips import router_manifest, zip_entries

Answer = tuple[str, int, Any]  # operation id, status, JSON body
Seen = defaultdict[type, set[str]]


def _documented(app: Litestar) -> dict[tuple[str, int], Any]:
    """(operation id, status) → the shape the OpenAPI document gives that answer."""
    shapes = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if isinstance(handler.operation_id, str):
                for status, spec in (handler.responses or {}).items():
                    shapes[(handler.operation_id, status)] = spec.data_container
    return shapes


def _type_info(shape: Any) -> mi.Type:
    """msgspec's description of a documented shape (an untagged union of Structs, too)."""
    options = typing.get_args(shape)
    if options:
        return mi.UnionType(tuple(mi.type_info(option) for option in options))
    return mi.type_info(shape)


def _scalar_mismatch(value: Any, kind: mi.Type) -> bool | None:
    """Whether a scalar value does not fit `kind`; None when `kind` is not a scalar type."""
    match kind:
        case mi.AnyType():
            return False
        case mi.NoneType():
            return value is not None
        case mi.BoolType():
            return not isinstance(value, bool)
        case mi.IntType():
            return isinstance(value, bool) or not isinstance(value, int)
        case mi.FloatType():
            return isinstance(value, bool) or not isinstance(value, int | float)
        case mi.StrType():
            return not isinstance(value, str)
        case mi.LiteralType(values=values):
            return value not in values
    return None


def _mismatches(value: Any, kind: mi.Type, where: str, seen: Seen) -> list[str]:
    """How `value` departs from `kind`; the keys of each Struct met are added to `seen`."""
    scalar = _scalar_mismatch(value, kind)
    if scalar is not None:
        return [f"{where}: {value!r} is not {type(kind).__name__}"] if scalar else []
    match kind:
        case mi.ListType(item_type=item):
            if not isinstance(value, list):
                return [f"{where}: {value!r} is not a list"]
            return [p for i, v in enumerate(value) for p in _mismatches(v, item, f"{where}[{i}]", seen)]
        case mi.DictType(value_type=item):
            if not isinstance(value, dict):
                return [f"{where}: {value!r} is not an object"]
            return [p for k, v in value.items() for p in _mismatches(v, item, f"{where}.{k}", seen)]
        case mi.UnionType(types=options):
            return _union_mismatches(value, options, where, seen)
        case mi.StructType():
            return _struct_mismatches(value, kind, where, seen)
    return [f"{where}: the test does not know {kind!r}"]


def _union_mismatches(value: Any, options: tuple[mi.Type, ...], where: str, seen: Seen) -> list[str]:
    found: list[str] = []
    for option in options:
        tried: Seen = defaultdict(set)
        problems = _mismatches(value, option, where, tried)
        if not problems:
            for cls, keys in tried.items():
                seen[cls] |= keys
            return []
        found += problems
    return [f"{where}: fits none of {[type(o).__name__ for o in options]}", *found]


def _struct_mismatches(value: Any, kind: mi.StructType, where: str, seen: Seen) -> list[str]:
    name = kind.cls.__name__
    if not isinstance(value, dict):
        return [f"{where}: {value!r} is not a {name} object"]
    fields = {f.encode_name: f for f in kind.fields}
    problems = [f"{where}: key {k!r} is in the answer but not in {name}" for k in value if k not in fields]
    problems += [
        f"{where}: {name}.{k} is missing from the answer"
        for k, f in fields.items()
        if f.required and k not in value
    ]
    seen[kind.cls] |= set(value) & set(fields)
    for key in set(value) & set(fields):
        problems += _mismatches(value[key], fields[key].type, f"{where}.{key}", seen)
    return problems


def _structs(kind: mi.Type, found: dict[type, mi.StructType]) -> None:
    """Every Struct type reachable from `kind`."""
    match kind:
        case mi.StructType(cls=cls, fields=fields) if cls not in found:
            found[cls] = kind
            for f in fields:
                _structs(f.type, found)
        case mi.ListType(item_type=item) | mi.DictType(value_type=item):
            _structs(item, found)
        case mi.UnionType(types=options):
            for option in options:
                _structs(option, found)


# ------------------------------------------------------------------------------------ the scenario


async def _call(
    client: httpx.AsyncClient, answers: list[Answer], operation: str, method: str, path: str, **kw: Any
) -> Any:
    response = await client.request(method, BASE + path, **kw)
    assert response.headers["content-type"].startswith("application/json"), (operation, response.text)
    answers.append((operation, response.status_code, response.json()))
    return response.json()


async def _bundle_answers(
    client: httpx.AsyncClient, service: Service, root: Path, answers: list[Answer]
) -> None:
    """Bundles: registered, a rejected reload (422, then listed), accepted and unchanged reloads, an upload."""
    directory = write_bundle(root, "shaped", lifecycle_manifest("shaped"))
    await register_bundle(service, directory)
    write_bundle(root, "shaped", {"graph_id": "shaped", "manifest_version": "1.0", "nodes": []})
    await _call(client, answers, "reloadBundle", "POST", "/bundles/shaped/reload")
    await _call(client, answers, "listBundles", "GET", "/bundles")
    await _call(client, answers, "getBundle", "GET", "/bundles/shaped")
    write_bundle(root, "shaped", lifecycle_manifest("shaped", sink_config={"complete_on_message": False}))
    await _call(client, answers, "reloadBundle", "POST", "/bundles/shaped/reload")
    await _call(client, answers, "reloadBundle", "POST", "/bundles/shaped/reload")
    await _call(client, answers, "getBundle", "GET", "/bundles/shaped")
    await _call(client, answers, "getBundle", "GET", "/bundles/unknown")
    archive = zip_entries([("manifest.json", router_manifest("uploaded")), ("payloads/", b"")])
    files = {"bundle": ("bundle.zip", archive, "application/zip")}
    await _call(client, answers, "uploadBundle", "POST", "/bundles/upload", files=files)


def _holding_a_lease(agent: str, message: dict[str, Any], lease_id: str) -> tuple[NewEvent, ...]:
    """An executor agent's events from receiving `message` to holding the lease `lease_id`."""
    return (
        NewEvent("agent_message_received", received_payload(message), agent),
        NewEvent("executor_lease_requested", {"pool": "default", "slots": 1}, agent),
        NewEvent(
            "executor_lease_acquired",
            {"lease_id": lease_id, "pool": "default", "slots": 1, "queue_wait_ms": 0},
            agent,
        ),
    )


async def _executor_job(
    client: httpx.AsyncClient, db: Database, service: Service, answers: list[Answer]
) -> str:
    """A running executor job (submitted twice with one key): one agent holds a lease, one sandbox finished."""
    keyed = {"json": executor_manifest(), "headers": {"Idempotency-Key": "k1"}}
    created = await _call(client, answers, "submitJob", "POST", "/jobs", **keyed)
    await _call(client, answers, "submitJob", "POST", "/jobs", **keyed)
    job_id = str(created["job_id"])
    job = await run(db, service, job_id)
    path = f"/jobs/{job_id}/messages"
    for agent in ("worker_a", "worker_b"):
        await _call(client, answers, "deliverMessage", "POST", path, json={"agent_id": agent})
    events = await job_events(client, job_id)
    received = {
        a: next(e for e in events if e["agent_id"] == a)["payload"]["message"]
        for a in ("worker_a", "worker_b")
    }
    for agent, lease_id in (("worker_b", "lease-b"), ("worker_a", "lease-a")):
        held = _holding_a_lease(agent, received[agent], lease_id)
        await service.execute(job_id, RecordAgentEvents(agent, held), job.fence)
    lease = {"lease_id": "lease-a", "pool": "default", "slots": 1}
    sandbox = {
        "sandbox_name": "sbx-a",
        "exit_code": 0,
        "attempts": 1,
        "lease_id": "lease-a",
        "pool": "default",
    }
    done = (
        NewEvent("executor_lease_released", lease, "worker_a"),
        NewEvent("sandbox_job_completed", sandbox, "worker_a"),
    )
    await service.execute(job_id, RecordAgentEvents("worker_a", done), job.fence)
    step = CommitStep("worker_a", received["worker_a"]["envelope"]["message_id"], 0, None)
    await service.execute(job_id, step, job.fence)
    return job_id


async def _job_answers(
    client: httpx.AsyncClient, db: Database, service: Service, answers: list[Answer]
) -> None:
    """Jobs: submits (one replayed, one from a bundle, one refused), details, pages, controls, cleanup."""
    job_id = await _executor_job(client, db, service, answers)
    await _call(client, answers, "getJob", "GET", f"/jobs/{job_id}")
    await _call(
        client,
        answers,
        "submitJob",
        "POST",
        "/jobs",
        json={"graph_id": "x", "manifest_version": "1.0", "nodes": []},
    )
    bundled = await _call(client, answers, "submitJob", "POST", "/jobs", json={"bundle_id": "shaped"})
    controlled = str(bundled["job_id"])
    await run(db, service, controlled)
    await _call(client, answers, "getJob", "GET", f"/jobs/{controlled}")
    await _call(client, answers, "getJob", "GET", "/jobs/unknown")
    await _call(client, answers, "listJobs", "GET", "/jobs?limit=1")
    await _call(client, answers, "listJobs", "GET", "/jobs")
    await _call(client, answers, "listJobEvents", "GET", f"/jobs/{job_id}/events?limit=1")
    await _call(client, answers, "listJobEvents", "GET", f"/jobs/{job_id}/events")
    await _call(client, answers, "listEvents", "GET", "/events?limit=2")
    await _call(client, answers, "pauseJob", "POST", f"/jobs/{controlled}/pause")
    await _call(client, answers, "resumeJob", "POST", f"/jobs/{controlled}/resume")
    await _call(client, answers, "cancelJob", "POST", f"/jobs/{controlled}/cancel")
    await _call(client, answers, "cleanupJobs", "POST", "/jobs/cleanup")


async def _answers(
    make_client: ClientFactory, db: Database, service: Service, tmp_path: Path
) -> list[Answer]:
    answers: list[Answer] = []
    now = int(time.time() * 1000)
    await add_node(db, NODE, heartbeat_ms=now)
    await add_node(db, "peer", heartbeat_ms=now, runtime_enabled=False)
    root = tmp_path / "bundles"
    settings = Settings(bundles_dir=root, temp_dir=tmp_path / "temp", bundle_upload_max_bytes=1_000_000)
    client = await make_client(settings)
    await _call(client, answers, "getHealth", "GET", "/health")
    await _call(client, answers, "getReadiness", "GET", "/health/ready")
    await _bundle_answers(client, service, root, answers)
    await _job_answers(client, db, service, answers)
    await _call(client, answers, "listNodes", "GET", "/nodes")
    await _call(client, answers, "getSystemSummary", "GET", "/system/summary")
    return answers


# ------------------------------------------------------------------------------------ the test


def _shape_app() -> Litestar:
    unused = Database("sqlite+aiosqlite:///never-opened.db")  # engines connect lazily: nothing is opened
    return create_app(Settings(), unused, Service(unused), node_name="schema")


DOCUMENTED = _documented(_shape_app())


async def test_every_answer_and_its_struct_have_the_same_fields(
    make_client: ClientFactory, db: Database, service: Service, tmp_path: Path
) -> None:
    answers = await _answers(make_client, db, service, tmp_path)
    seen: Seen = defaultdict(set)
    problems: list[str] = []
    reachable: dict[type, mi.StructType] = {}
    for operation, status, body in answers:
        shape = DOCUMENTED.get((operation, status))
        assert shape is not None, f"{operation} answered {status}, which its route does not document: {body}"
        kind = _type_info(shape)
        _structs(kind, reachable)
        problems += _mismatches(body, kind, f"{operation} {status}", seen)
    assert problems == []
    # Every documented success (a new route, a new status) must be in the scenario.
    assert {key for key in DOCUMENTED if key[1] < 300} <= {(o, s) for o, s, _ in answers}
    never = {
        cls.__name__: sorted({f.encode_name for f in kind.fields} - seen[cls])
        for cls, kind in reachable.items()
    }
    assert {name: fields for name, fields in never.items() if fields} == {}


@pytest.mark.parametrize(
    ("shape", "body", "problem"),
    [
        (
            msgspec.defstruct("Wire", [("a", int)]),
            {"a": 1, "b": 2},
            "key 'b' is in the answer but not in Wire",
        ),
        (msgspec.defstruct("Wire", [("a", int), ("b", int)]), {"a": 1}, "Wire.b is missing from the answer"),
        (msgspec.defstruct("Wire", [("a", int)]), {"a": "1"}, "'1' is not IntType"),
    ],
)
def test_the_check_sees_a_field_on_one_side_only(shape: Any, body: Any, problem: str) -> None:
    found = _mismatches(body, mi.type_info(shape), "x", defaultdict(set))
    assert any(p.endswith(problem) for p in found), found
