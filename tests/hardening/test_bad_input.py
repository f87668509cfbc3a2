"""The bad-input catalogue (issue 6 item 2): every way a client can get a request wrong, each with
its SPEC error and status, and nothing written — on SQLite and on Postgres.

Each row is one request against a database holding a running and a pending job; the test compares
the status and the JSON body, then the row counts of every table that records history
(events, jobs, agents, bundles, job leases) before and after. Manifests exactly at the §5.6 size
limits are the positive controls at the end: they are accepted and write one job.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import func, select

from app.config import Settings
from app.http.app import create_app
from app.service import Service
from app.store.database import Database
from app.store.rebuild import verify
from app.store.tables import agents, bundles, events, job_leases, jobs
from tests.api.conftest import BASE, NODE, lifecycle_manifest, run, submit
from tests.conftest import reset

LIMIT_BYTES = 10 * 1024 * 1024
GRAPH_ID_ERROR = 'graph_id must be a non-empty string of at most 128 characters using only letters, digits, "_", "." and "-"'
ENTRYPOINT_ERROR = "manifest must define at least one entrypoint or one node with role root/root_coordinator"
NUL = "invalid JSON: NUL characters (\\u0000) are not supported"
DEPTH = "invalid JSON: nesting deeper than 512 levels"
NOT_OBJECT = "request body must be a JSON object"
TOO_LARGE = f"request body exceeds the limit of {LIMIT_BYTES} bytes"
LIMIT = "limit must be an integer between 1 and 1000"
AFTER = "after must be a non-negative integer"
CURSOR = "invalid cursor"
INVALID = "Manifest validation failed"
UPLOAD_WITHOUT_BUNDLE = "node x uploads files but the job has no bundle; submit it with bundle_id"
BUNDLE_PATH = "_bundle_path /etc was not issued by an upload"
INJECTIONS = {
    "sql": "' OR '1'='1' --",
    "sql_stacked": "x'; DROP TABLE events; --",
    "html": "<script>alert(1)</script>",
    "template": "${jndi:ldap://127.0.0.1/a}{{7*7}}",
    "percent": "%27%20OR%201=1%00",
    "unicode": "日本-💥-\u202e",
}
RUNNING, PENDING = "{running}", "{pending}"


def js(value: Any) -> bytes:
    """A JSON body."""
    return json.dumps(value).encode()


def cursor_of(raw: bytes) -> str:
    """A cursor forged from raw bytes, encoded like the server's own."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def manifest(**changes: Any) -> dict[str, Any]:
    """The §13.5 manifest with changes."""
    return {**lifecycle_manifest(), **changes}


def wide_manifest(
    nodes: int = 1, edges: int = 0, id_length: int = 4, graph_id: str = "wide"
) -> dict[str, Any]:
    """A valid shape with `nodes` routers (the first is the root) and `edges` edges between them."""
    names = [f"n{i}".rjust(id_length, "x") for i in range(nodes)]
    graph_nodes = [{"node_id": name, "agent_type": "router"} for name in names]
    graph_nodes[0]["role"] = "root"
    edge_list = [
        {"from_node": names[i % nodes], "to_node": names[(i + 1) % nodes], "message_type": "m"}
        for i in range(edges)
    ]
    return {"manifest_version": "1", "graph_id": graph_id, "nodes": graph_nodes, "edges": edge_list}


def upload_manifest(config: dict[str, Any]) -> dict[str, Any]:
    """A raw manifest whose executor declares uploads."""
    node = {"node_id": "x", "agent_type": "executor", "role": "root", "config": {"command": "true", **config}}
    return {"manifest_version": "1", "graph_id": "uploads", "nodes": [node]}


@functools.cache
def big(name: str) -> bytes:
    """Large bodies, built once per session."""
    makers: dict[str, Callable[[], bytes]] = {
        "over_limit": lambda: b'{"a":"' + b"x" * LIMIT_BYTES + b'"}',
        "huge_string": lambda: js(manifest(graph_id="g" * 9_000_000 + "!")),
        "huge_array": lambda: js(manifest(nodes=[0] * 100_000)),
        "nodes_10001": lambda: js(wide_manifest(nodes=10_001)),
        "edges_100001": lambda: js(wide_manifest(nodes=2, edges=100_001)),
        "nodes_10000": lambda: js(wide_manifest(nodes=10_000)),
        "edges_100000": lambda: js(wide_manifest(nodes=2, edges=100_000)),
    }
    return makers[name]()


@dataclass(frozen=True)
class Bad:
    """One bad request and the exact answer SPEC gives it."""

    id: str
    method: str
    path: str
    status: int
    error: str
    body: bytes | str | None = None  # a str names a `big()` body
    headers: dict[str, str | bytes] = field(default_factory=dict)
    params: tuple[tuple[str, str], ...] = ()
    errors: tuple[str, ...] | None = None
    prefix: bool = False  # `error` is a prefix (the parser's detail follows)
    chunked: bool = False
    answer: dict[str, Any] | None = None  # a whole JSON answer (for inputs that are harmless, not errors)


def _path_injections() -> list[Bad]:
    """Every path parameter of every route, with each injection string."""
    cases = []
    for name, text in INJECTIONS.items():
        quoted = quote(text, safe="")
        # A `/` in an id makes another path, which no route matches.
        job_error = "Not Found" if "/" in text else f"job {text} was not found"
        bundle_error = "Not Found" if "/" in text else f"Bundle {text} not found"
        cases += [
            Bad(f"path-job-details-{name}", "GET", f"/jobs/{quoted}", 404, job_error),
            Bad(f"path-cancel-{name}", "POST", f"/jobs/{quoted}/cancel", 404, job_error),
            Bad(f"path-pause-{name}", "POST", f"/jobs/{quoted}/pause", 404, job_error),
            Bad(f"path-resume-{name}", "POST", f"/jobs/{quoted}/resume", 404, job_error),
            Bad(f"path-events-{name}", "GET", f"/jobs/{quoted}/events", 404, job_error),
            Bad(
                f"path-messages-{name}",
                "POST",
                f"/jobs/{quoted}/messages",
                404,
                job_error,
                js({"agent_id": "root"}),
            ),
            Bad(f"path-bundle-{name}", "GET", f"/bundles/{quoted}", 404, bundle_error),
            Bad(f"path-reload-{name}", "POST", f"/bundles/{quoted}/reload", 404, bundle_error),
        ]
    return cases


def _query_injections() -> list[Bad]:
    """Every query parameter (and the Last-Event-ID header), with each injection string."""
    empty_list = {"data": [], "next_cursor": None}
    cases = []
    for name, text in INJECTIONS.items():
        cases += [
            Bad(f"query-limit-{name}", "GET", "/jobs", 400, LIMIT, params=(("limit", text),)),
            Bad(f"query-cursor-{name}", "GET", "/jobs", 400, CURSOR, params=(("cursor", text),)),
            Bad(
                f"query-status-{name}",
                "GET",
                "/jobs",
                400,
                f'unknown status "{text}"',
                params=(("status", text),),
            ),
            Bad(
                f"query-graph-{name}",
                "GET",
                "/jobs",
                200,
                "",
                params=(("graph_id", text),),
                answer=empty_list,
            ),
            Bad(f"query-after-{name}", "GET", "/events", 400, AFTER, params=(("after", text),)),
            Bad(
                f"query-job-after-{name}",
                "GET",
                f"/jobs/{RUNNING}/events",
                400,
                AFTER,
                params=(("after", text),),
            ),
            Bad(
                f"query-older-{name}",
                "POST",
                "/jobs/cleanup",
                400,
                "older_than must be a non-negative integer",
                params=(("older_than", text),),
            ),
            Bad(
                f"header-last-event-id-{name}",
                "GET",
                "/events",
                400,
                "Last-Event-ID must be a non-negative integer",
                headers={"Last-Event-ID": text.encode("utf-8")},
            ),
        ]
    # Flags read anything but true/1 as false: harmless, and nothing is deleted without `all`.
    cases += [
        Bad(
            "query-all-injection",
            "POST",
            "/jobs/cleanup",
            200,
            "",
            params=(("all", INJECTIONS["sql"]),),
            answer={"deleted_count": 0, "deleted_jobs": []},
        ),
        Bad(
            "query-include-terminal-injection",
            "GET",
            "/jobs",
            200,
            "",
            params=(("include_terminal", INJECTIONS["sql"]), ("graph_id", "none")),
            answer=empty_list,
        ),
    ]
    return cases


CASES: list[Bad] = [
    # ---- malformed JSON and encodings (POST /jobs)
    Bad("json-truncated", "POST", "/jobs", 400, "invalid JSON: Expecting value", b'{"a":', prefix=True),
    Bad("json-trailing-data", "POST", "/jobs", 400, "invalid JSON: Extra data", b"{} {}", prefix=True),
    Bad(
        "json-single-quotes",
        "POST",
        "/jobs",
        400,
        "invalid JSON: Expecting property name",
        b"{'a': 1}",
        prefix=True,
    ),
    Bad("json-trailing-comma", "POST", "/jobs", 400, "invalid JSON: ", b'{"a": 1,}', prefix=True),
    Bad("json-nan", "POST", "/jobs", 400, "invalid JSON: NaN is not a valid JSON value", b'{"a": NaN}'),
    Bad(
        "json-infinity",
        "POST",
        "/jobs",
        400,
        "invalid JSON: Infinity is not a valid JSON value",
        b'{"a": Infinity}',
    ),
    Bad(
        "json-number-out-of-range",
        "POST",
        "/jobs",
        400,
        "invalid JSON: number out of range: 1e999",
        b'{"a": 1e999}',
    ),
    Bad(
        "json-not-utf8",
        "POST",
        "/jobs",
        400,
        "invalid JSON: 'utf-8' codec can't decode byte 0xff",
        b'{"a": "\xff"}',
        prefix=True,
    ),
    Bad(
        "json-latin1",
        "POST",
        "/jobs",
        400,
        "invalid JSON: 'utf-8' codec can't decode",
        '{"a": "é"}'.encode("latin-1"),
        prefix=True,
    ),
    Bad("json-utf16", "POST", "/jobs", 400, NUL, '{"graph_id": "x"}'.encode("utf-16")),
    Bad(
        "json-utf8-bom",
        "POST",
        "/jobs",
        400,
        "invalid JSON: Unexpected UTF-8 BOM",
        b'\xef\xbb\xbf{"a": 1}',
        prefix=True,
    ),
    Bad(
        "json-lone-surrogate",
        "POST",
        "/jobs",
        400,
        "invalid JSON: unpaired UTF-16 surrogates are not supported",
        b'{"a": "\\ud800"}',
    ),
    Bad("json-nul-escape", "POST", "/jobs", 400, NUL, b'{"a": "\\u0000"}'),
    Bad("json-nul-byte", "POST", "/jobs", 400, NUL, b'{"a": "\x00"}'),
    Bad("json-nul-in-key", "POST", "/jobs", 400, NUL, b'{"\\u0000": 1}'),
    Bad(
        "messages-json-truncated",
        "POST",
        f"/jobs/{RUNNING}/messages",
        400,
        "invalid JSON: ",
        b"{",
        prefix=True,
    ),
    Bad(
        "messages-not-utf8",
        "POST",
        f"/jobs/{RUNNING}/messages",
        400,
        "invalid JSON: 'utf-8' codec",
        b'{"\xfe": 1}',
        prefix=True,
    ),
    # ---- bodies that are not objects
    Bad("body-array", "POST", "/jobs", 400, NOT_OBJECT, b"[1]"),
    Bad("body-string", "POST", "/jobs", 400, NOT_OBJECT, b'"manifest"'),
    Bad("body-number", "POST", "/jobs", 400, NOT_OBJECT, b"42"),
    Bad("body-null", "POST", "/jobs", 400, NOT_OBJECT, b"null"),
    Bad("body-true", "POST", "/jobs", 400, NOT_OBJECT, b"true"),
    Bad(
        "messages-body-array", "POST", f"/jobs/{RUNNING}/messages", 400, NOT_OBJECT, b'[{"agent_id": "sink"}]'
    ),
    # ---- nesting
    Bad("nesting-10k-arrays", "POST", "/jobs", 400, DEPTH, b"[" * 10_000 + b"]" * 10_000),
    Bad("nesting-10k-objects", "POST", "/jobs", 400, DEPTH, b'{"a":' * 10_000 + b"1" + b"}" * 10_000),
    Bad(
        "nesting-100k-in-manifest",
        "POST",
        "/jobs",
        400,
        DEPTH,
        b'{"graph_id": "g", "metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ),
    Bad("nesting-513", "POST", "/jobs", 400, DEPTH, b'{"a":' + b"[" * 512 + b"]" * 512 + b"}"),
    Bad(
        "messages-nesting-10k",
        "POST",
        f"/jobs/{RUNNING}/messages",
        400,
        DEPTH,
        b'{"agent_id": "sink", "message": ' + b'{"a":' * 10_000 + b"{}" + b"}" * 10_000 + b"}",
    ),
    # ---- sizes
    Bad("body-over-limit", "POST", "/jobs", 413, TOO_LARGE, "over_limit"),
    Bad("body-over-limit-chunked", "POST", "/jobs", 413, TOO_LARGE, "over_limit", chunked=True),
    Bad("messages-over-limit", "POST", f"/jobs/{RUNNING}/messages", 413, TOO_LARGE, "over_limit"),
    Bad("huge-string", "POST", "/jobs", 400, INVALID, "huge_string", errors=(GRAPH_ID_ERROR,)),
    Bad(
        "huge-array",
        "POST",
        "/jobs",
        400,
        INVALID,
        "huge_array",
        errors=(
            "nodes must not contain more than 10000 entries",
            *(f"node at index {i} must be an object" for i in range(100_000)),
            ENTRYPOINT_ERROR,
        ),
    ),
    # ---- content types
    *(
        Bad(
            f"content-type-{kind.split('/')[1].split(';')[0]}",
            "POST",
            "/jobs",
            415,
            f'unsupported content type "{kind}"; expected application/json',
            js(manifest()),
            headers={"Content-Type": kind},
        )
        for kind in (
            "text/plain",
            "application/xml",
            "multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded",
            "text/json",
            "application/jsonp",
        )
    ),
    Bad(
        "messages-content-type",
        "POST",
        f"/jobs/{RUNNING}/messages",
        415,
        'unsupported content type "text/csv"; expected application/json',
        js({"agent_id": "sink"}),
        headers={"Content-Type": "text/csv"},
    ),
    Bad("missing-content-type-bad-json", "POST", "/jobs", 400, "invalid JSON: ", b"nope", prefix=True),
    Bad(
        "empty-body-any-content-type",
        "POST",
        "/jobs",
        400,
        "Empty JSON payload",
        b"",
        headers={"Content-Type": "text/plain"},
    ),
    Bad("empty-object", "POST", "/jobs", 400, "Empty JSON payload", b"{}"),
    # ---- unknown and refused fields
    Bad(
        "bundle-unknown-field",
        "POST",
        "/jobs",
        400,
        'unexpected field "graph_id" in a bundle submission; only bundle_id and initial_inputs are allowed',
        js({"bundle_id": "demo", "zeta": 1, "graph_id": "g"}),
    ),
    Bad(
        "bundle-id-empty", "POST", "/jobs", 400, "bundle_id must be a non-empty string", js({"bundle_id": ""})
    ),
    Bad(
        "bundle-id-number", "POST", "/jobs", 400, "bundle_id must be a non-empty string", js({"bundle_id": 7})
    ),
    Bad("bundle-path-field", "POST", "/jobs", 400, BUNDLE_PATH, js({**manifest(), "_bundle_path": "/etc"})),
    Bad(
        "manifest-wrong-shapes",
        "POST",
        "/jobs",
        400,
        INVALID,
        js({"graph_id": ["g"], "manifest_version": None, "nodes": {}, "edges": "x", "policies": []}),
        errors=(
            "manifest_version is required",
            GRAPH_ID_ERROR,
            "nodes must be a list",
            "edges must be a list",
            ENTRYPOINT_ERROR,
            "policies must be an object",
        ),
    ),
    # ---- Idempotency-Key
    Bad(
        "idempotency-key-too-long",
        "POST",
        "/jobs",
        400,
        "Idempotency-Key must be 1 to 255 visible ASCII characters",
        js(manifest()),
        headers={"Idempotency-Key": "k" * 256},
    ),
    Bad(
        "idempotency-key-space",
        "POST",
        "/jobs",
        400,
        "Idempotency-Key must be 1 to 255 visible ASCII characters",
        js(manifest()),
        headers={"Idempotency-Key": "a b"},
    ),
    Bad(
        "idempotency-key-empty",
        "POST",
        "/jobs",
        400,
        "Idempotency-Key must be 1 to 255 visible ASCII characters",
        js(manifest()),
        headers={"Idempotency-Key": ""},
    ),
    # ---- limits, cursors, integers
    *(
        Bad(
            f"limit-{route.strip('/').replace('/', '-')}-{value!r}",
            "GET",
            route,
            400,
            LIMIT,
            params=(("limit", value),),
        )
        for route in ("/jobs", "/events", f"/jobs/{RUNNING}/events")
        for value in ("-1", "0", "1001", "9" * 40, "1e2", "+5", " 5", "5.0", "")
    ),
    Bad("after-negative", "GET", "/events", 400, AFTER, params=(("after", "-1"),)),
    Bad(
        "older-than-negative",
        "POST",
        "/jobs/cleanup",
        400,
        "older_than must be a non-negative integer",
        params=(("older_than", "-5"),),
    ),
    Bad("cursor-not-base64", "GET", "/jobs", 400, CURSOR, params=(("cursor", "!!!!"),)),
    Bad("cursor-not-ascii", "GET", "/jobs", 400, CURSOR, params=(("cursor", "é"),)),
    Bad("cursor-object", "GET", "/jobs", 400, CURSOR, params=(("cursor", cursor_of(b'{"a": 1}')),)),
    Bad("cursor-one-item", "GET", "/jobs", 400, CURSOR, params=(("cursor", cursor_of(b'["x"]')),)),
    Bad("cursor-numbers", "GET", "/jobs", 400, CURSOR, params=(("cursor", cursor_of(b"[1, 2]")),)),
    Bad("cursor-nul", "GET", "/jobs", 400, CURSOR, params=(("cursor", cursor_of(b'["\\u0000", "x"]')),)),
    Bad("cursor-not-utf8", "GET", "/jobs", 400, CURSOR, params=(("cursor", cursor_of(b"\xff\xfe")),)),
    Bad("cursor-deep", "GET", "/jobs", 400, CURSOR, params=(("cursor", cursor_of(b"[" * 10_000)),)),
    Bad("status-empty-item", "GET", "/jobs", 400, 'unknown status ""', params=(("status", "running,"),)),
    # ---- event stream options
    Bad(
        "follow-without-stream",
        "GET",
        "/events",
        400,
        "follow=true requires Accept: text/event-stream or application/x-ndjson",
        params=(("follow", "true"),),
    ),
    Bad(
        "follow-with-limit",
        "GET",
        f"/jobs/{RUNNING}/events",
        400,
        "limit cannot be combined with follow=true",
        params=(("follow", "1"), ("limit", "5")),
        headers={"Accept": "text/event-stream"},
    ),
    # ---- path traversal
    Bad(
        "bundle-id-traversal",
        "POST",
        "/jobs",
        404,
        "Bundle ../../etc/passwd not found",
        js({"bundle_id": "../../etc/passwd"}),
    ),
    Bad("bundle-id-absolute", "POST", "/jobs", 404, "Bundle /etc not found", js({"bundle_id": "/etc"})),
    Bad("bundle-route-traversal", "GET", "/bundles/..%2F..%2Fetc%2Fpasswd", 404, "Not Found"),
    Bad("bundle-route-dotdot", "GET", "/bundles/%2e%2e", 404, "Bundle .. not found"),
    Bad("reload-route-traversal", "POST", "/bundles/..%2F..%2Ftmp/reload", 404, "Not Found"),
    Bad("job-route-traversal", "GET", "/jobs/..%2F..%2Fetc%2Fpasswd/events", 404, "Not Found"),
    Bad("job-route-nul", "GET", "/jobs/x%00y", 404, "Not Found"),
    Bad(
        "upload-source-traversal",
        "POST",
        "/jobs",
        400,
        INVALID,
        js(upload_manifest({"upload_paths": [{"source": "../../etc/passwd", "target": "passwd"}]})),
        errors=(UPLOAD_WITHOUT_BUNDLE,),
    ),
    Bad(
        "upload-target-absolute",
        "POST",
        "/jobs",
        400,
        INVALID,
        js(upload_manifest({"uploads": [{"source": "a", "target": "/etc/cron.d/x"}]})),
        errors=(UPLOAD_WITHOUT_BUNDLE,),
    ),
    Bad(
        "upload-path-absolute",
        "POST",
        "/jobs",
        400,
        INVALID,
        js(upload_manifest({"upload_path": "/etc/shadow", "upload_as": "../../x"})),
        errors=(UPLOAD_WITHOUT_BUNDLE,),
    ),
    # ---- manifests over the §5.6 size limits
    Bad(
        "nodes-10001",
        "POST",
        "/jobs",
        400,
        INVALID,
        "nodes_10001",
        errors=("nodes must not contain more than 10000 entries",),
    ),
    Bad(
        "edges-100001",
        "POST",
        "/jobs",
        400,
        INVALID,
        "edges_100001",
        errors=("edges must not contain more than 100000 entries",),
    ),
    Bad(
        "graph-id-129",
        "POST",
        "/jobs",
        400,
        INVALID,
        js(manifest(graph_id="g" * 129)),
        errors=(GRAPH_ID_ERROR,),
    ),
    Bad(
        "node-id-129",
        "POST",
        "/jobs",
        400,
        INVALID,
        js(wide_manifest(nodes=1, id_length=129)),
        errors=("node_id must be a string of at most 128 characters (node at index 0)",),
    ),
    # ---- external messages
    Bad(
        "message-no-agent",
        "POST",
        f"/jobs/{RUNNING}/messages",
        400,
        "agent_id is required",
        js({"message": {}}),
    ),
    Bad(
        "message-agent-number",
        "POST",
        f"/jobs/{RUNNING}/messages",
        400,
        "agent_id is required",
        js({"agent_id": 5}),
    ),
    Bad("message-empty-body", "POST", f"/jobs/{RUNNING}/messages", 400, "agent_id is required", b""),
    Bad(
        "message-not-object",
        "POST",
        f"/jobs/{RUNNING}/messages",
        400,
        "message must be an object",
        js({"agent_id": "sink", "message": "hi"}),
    ),
    Bad(
        "message-encoding",
        "POST",
        f"/jobs/{RUNNING}/messages",
        400,
        'unsupported content_encoding "br"',
        js({"agent_id": "sink", "message": {"content_encoding": "br"}}),
    ),
    Bad(
        "message-envelope-encoding",
        "POST",
        f"/jobs/{RUNNING}/messages",
        400,
        'unsupported content_encoding "7"',
        js({"agent_id": "sink", "message": {"envelope": {"content_encoding": 7}}}),
    ),
    Bad(
        "message-ghost-agent",
        "POST",
        f"/jobs/{RUNNING}/messages",
        404,
        f"agent ghost was not found in job {RUNNING}",
        js({"agent_id": "ghost"}),
    ),
    Bad(
        "message-pending-job",
        "POST",
        f"/jobs/{PENDING}/messages",
        409,
        f"job {PENDING} is not running",
        js({"agent_id": "sink"}),
    ),
    Bad("pause-pending-job", "POST", f"/jobs/{PENDING}/pause", 409, f"job {PENDING} is not running"),
    Bad("resume-running-job", "POST", f"/jobs/{RUNNING}/resume", 409, f"job {RUNNING} is not paused"),
    # ---- methods
    Bad("method-delete-jobs", "DELETE", "/jobs", 405, "Method Not Allowed"),
    Bad("method-put-job", "PUT", f"/jobs/{RUNNING}", 405, "Method Not Allowed", js(manifest())),
    Bad("method-get-cleanup", "GET", "/jobs/cleanup", 405, "Method Not Allowed"),
    *_path_injections(),
    *_query_injections(),
]


async def _counts(db: Database) -> dict[str, int]:
    async with db.read() as conn:
        return {
            table.name: int((await conn.execute(select(func.count()).select_from(table))).scalar_one())
            for table in (events, jobs, agents, bundles, job_leases)
        }


@dataclass
class World:
    """One database per backend for the whole module: a running and a pending job, and a client."""

    client: httpx.AsyncClient
    db: Database
    ids: dict[str, str]


@pytest.fixture(scope="module")
async def world(database_url: str) -> AsyncIterator[World]:
    """Set up once per backend: the bad requests write nothing, so they can share it."""
    db = Database(database_url)
    await reset(db)
    service = Service(db)
    app = create_app(Settings(), db, service, node_name=NODE)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        running = await submit(client, lifecycle_manifest())
        pending = await submit(client, lifecycle_manifest())
        await run(db, service, running)
        yield World(client, db, {RUNNING: running, PENDING: pending})
    try:
        assert await verify(db) == []
    finally:
        await db.dispose()


def _fill(text: str, world: dict[str, str]) -> str:
    for placeholder, job_id in world.items():
        text = text.replace(placeholder, job_id)
    return text


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 1 << 20):
        yield body[start : start + (1 << 20)]


async def _send(client: httpx.AsyncClient, case: Bad, world: dict[str, str]) -> httpx.Response:
    body = big(case.body) if isinstance(case.body, str) else case.body
    content: Any = _chunks(body) if case.chunked and body is not None else body
    params = [(name, _fill(value, world)) for name, value in case.params]
    return await client.request(
        case.method, BASE + _fill(case.path, world), content=content, headers=case.headers, params=params
    )


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_bad_input_gets_its_error_and_writes_nothing(world: World, case: Bad) -> None:
    before = await _counts(world.db)
    response = await _send(world.client, case, world.ids)
    assert response.status_code == case.status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    if case.answer is not None:
        assert answer == case.answer
    else:
        error = _fill(case.error, world.ids)
        assert answer["error"].startswith(error) if case.prefix else answer["error"] == error, answer
        expected_keys = {"error", "errors"} if case.errors is not None else {"error"}
        assert set(answer) == expected_keys
        if case.errors is not None:
            assert answer["errors"] == list(case.errors)
    assert await _counts(world.db) == before


def test_the_catalogue_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize(
    "name, body",
    [
        ("nodes-10000", "nodes_10000"),
        ("edges-100000", "edges_100000"),
        ("graph-id-128", js(manifest(graph_id="g" * 128))),
        ("node-id-128", js(wide_manifest(nodes=1, id_length=128))),
    ],
)
async def test_manifests_at_the_limits_are_accepted(world: World, name: str, body: bytes | str) -> None:
    before = await _counts(world.db)
    content = big(body) if isinstance(body, str) else body
    response = await world.client.post(f"{BASE}/jobs", content=content)
    assert response.status_code == 201, response.text[:500]
    after = await _counts(world.db)
    assert after["jobs"] == before["jobs"] + 1
    assert after["events"] == before["events"] + 1
