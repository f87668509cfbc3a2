"""Every query the HTTP API reads: projection rows rendered as the records of SPEC §2.20, §9.6, §10.3.

Each query is bounded by an index: jobs by primary key or one of the (…, updated_at, job_id)
indexes with a LIMIT (keyset paging, never OFFSET), agents by their (job_id, agent_id) key,
events by (stream_id, sequence) or by position, leases by job id or incarnation. Nothing here
folds events. Operational values (`live?`, heartbeats, pool statistics) are read from the
operational tables at request time (Appendix B.8).

The records are plain dicts, not the `app.wire` Structs that document them: why, at the top of
`app/http/schemas.py`; `tests/api/test_wire_shapes.py` keeps the two the same shape.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import and_, bindparam, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ColumnElement

from app.domain import bundle as bundle_views
from app.domain.agent_kinds import COMMAND_TYPES
from app.domain.canonical import canonical_json, format_ms
from app.domain.events import ALL_STATUSES, TERMINAL_STATUSES
from app.store.database import Prepared
from app.store.event_store import api_record, read_stream_rows
from app.store.json_columns import parse_stored
from app.store.projector import JOB_ROW
from app.store.tables import (
    agents,
    any_of,
    bundles,
    executor_leases,
    id_list,
    in_list,
    job_leases,
    jobs,
    nodes,
    prepared,
)

# A row indexable by column name: an asyncpg Record (Postgres) or a SQLAlchemy RowMapping (SQLite).
_Row = Any

RECENT_EVENTS = 25
SUMMARY_JOBS = 100
NODE_MEMORY_MS = 3_600_000  # lost/stopped nodes stay listed for an hour (SPEC §10.3)
LIVE_STATUSES = frozenset({"pending", "queued"})
OWNED_STATUSES = frozenset({"running", "paused"})

_SUMMARY_COLUMNS = (
    jobs.c.job_id,
    jobs.c.graph_id,
    jobs.c.job_name,
    jobs.c.status,
    jobs.c.submitted_at,
    jobs.c.updated_at,
    jobs.c.placement_policy,
    jobs.c.recovery_policy,
    jobs.c.executor_count,
    jobs.c.nodes,
    jobs.c.sandbox_names,
    jobs.c.last_event,
)


@dataclass(frozen=True)
class JobPage:
    """One page of `GET /jobs`: JobSummary records and the cursor after the last one."""

    data: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True)
class Submission:
    """The job an Idempotency-Key was first used for."""

    job_id: str
    status: str
    request_sha256: str | None


@dataclass(frozen=True)
class StreamTip:
    """Where a job stream ends right now, for followers."""

    status: str
    last_sequence: int

    @property
    def terminal(self) -> bool:
        """True once the terminal event (always the last one) is recorded."""
        return self.status in TERMINAL_STATUSES


# ------------------------------------------------------------------------------------ cursors


def encode_cursor(updated_at: str, job_id: str) -> str:
    """The opaque `next_cursor`: URL-safe base64 (unpadded) of `[updated_at, job_id]`."""
    raw = canonical_json([updated_at, job_id]).encode("utf-8")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple[str, str] | None:
    """The (updated_at, job_id) of a cursor made by `encode_cursor`; None when it is not one."""
    if not cursor.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(_storable(v) for v in value)):
        return None
    return value[0], value[1]


# ------------------------------------------------------------------------------------ helpers


def _storable(value: object) -> bool:
    """True for a string a text column can hold (no NUL, no lone surrogate)."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json(text: str | None) -> Any:
    return None if text is None else parse_stored(text)


def _raw(text: str | None) -> msgspec.Raw | None:
    """A stored JSON column as it goes out in a response: as stored, not decoded and encoded again.

    The columns hold RFC 8785 JSON written by this service (canonical_json); decoding them with `json`
    and encoding them again was a tenth of the CPU of the job list (bench reads).
    """
    return None if text is None else msgspec.Raw(text)


# The statements of the API's job reads, built once and run through `Prepared` (straight on the
# driver on Postgres): constructing them per request was a third of the CPU of GET /jobs/{id}
# (817 → 1,227 req/s at 32 clients, bench reads on Postgres), and SQLAlchemy's execution layer
# most of the rest.
_LIVE_LEASES = prepared(
    lambda d: select(job_leases.c.job_id, job_leases.c.node).where(
        and_(
            any_of(job_leases.c.job_id, "b_job_ids", d),
            job_leases.c.released.is_(False),
            job_leases.c.expires_at_ms > bindparam("b_now"),
        )
    )
)
_ACTIVE_EXECUTORS = prepared(
    lambda d: select(agents.c.job_id, func.count().label("n"))
    .where(
        and_(
            any_of(agents.c.job_id, "b_job_ids", d),
            or_(*(agents.c.agent_type == t for t in sorted(COMMAND_TYPES))),  # one type: `agent_type = $2`
            agents.c.inflight_message_id.is_not(None),
        )
    )
    .group_by(agents.c.job_id)
)
_AGENTS_OF_JOB = Prepared(select(agents).where(agents.c.job_id == bindparam("b_job_id")))
_STATUS = Prepared(select(jobs.c.status).where(jobs.c.job_id == bindparam("b_job_id")))
_TIP = Prepared(select(jobs.c.status, jobs.c.last_sequence).where(jobs.c.job_id == bindparam("b_job_id")))
_HEARTBEAT = Prepared(select(nodes.c.last_heartbeat_ms).where(nodes.c.name == bindparam("b_node")))


async def _live_leases(conn: AsyncConnection, job_ids: Sequence[str], now_ms: int) -> dict[str, str]:
    """job_id → owner node name of every unexpired, unreleased job lease among `job_ids`."""
    if not job_ids:
        return {}
    values = {"b_job_ids": id_list(conn.dialect.name, job_ids), "b_now": now_ms}
    return {r["job_id"]: r["node"] for r in await _LIVE_LEASES.rows(conn, values)}


async def _active_executors(conn: AsyncConnection, job_ids: Sequence[str]) -> dict[str, int]:
    """job_id → executor agents with a message in flight."""
    if not job_ids:
        return {}
    rows = await _ACTIVE_EXECUTORS.rows(conn, {"b_job_ids": id_list(conn.dialect.name, job_ids)})
    return {r["job_id"]: int(r["n"]) for r in rows}


def _is_live(status: str, job_id: str, leases: dict[str, str]) -> bool:
    return status in LIVE_STATUSES or (status in OWNED_STATUSES and job_id in leases)


def _summary_records(
    rows: Iterable[Sequence[Any]], leases: dict[str, str], active: dict[str, int]
) -> list[dict[str, Any]]:
    """The JobSummary records of rows holding the `_SUMMARY_COLUMNS` in order (`live?` as `_is_live`).

    Rows unpacked by position in one comprehension: shaping a page of 100 cost 83 µs with a
    function call and a lookup by name per field, 49 µs so (bench/README.md, round 8).
    """
    raw = msgspec.Raw
    live_statuses, owned_statuses = LIVE_STATUSES, OWNED_STATUSES
    return [
        {
            "job_id": job_id,
            "graph_id": graph_id,
            "job_name": job_name,
            "status": status,
            "submitted_at": submitted_at,
            "updated_at": updated_at,
            "placement_policy": placement_policy,
            "recovery_policy": recovery_policy,
            "live?": status in live_statuses or (status in owned_statuses and job_id in leases),
            "executor_count": executor_count,
            "active_executors": active.get(job_id, 0),
            "nodes": None if nodes is None else raw(nodes),
            "sandbox_names": None if sandbox_names is None else raw(sandbox_names),
            "last_event": last_event,
        }
        for (
            job_id,
            graph_id,
            job_name,
            status,
            submitted_at,
            updated_at,
            placement_policy,
            recovery_policy,
            executor_count,
            nodes,
            sandbox_names,
            last_event,
        ) in rows
    ]


# The `_SUMMARY_COLUMNS` of a row indexable by column name, in order.
_summary_values = operator.itemgetter(*(c.name for c in _SUMMARY_COLUMNS))


async def _summaries(conn: AsyncConnection, rows: Sequence[_Row], now_ms: int) -> list[dict[str, Any]]:
    """JobSummary records of job rows, with two batched look-ups for the whole page."""
    owned = [r["job_id"] for r in rows if r["status"] in OWNED_STATUSES]
    leases = await _live_leases(conn, owned, now_ms)
    # After the terminal event nothing runs (SPEC §3.3), so only live jobs can have active executors.
    running = [r["job_id"] for r in rows if r["executor_count"] > 0 and r["status"] not in TERMINAL_STATUSES]
    active = await _active_executors(conn, running)
    # asyncpg's records unpack into their values; SQLAlchemy's row mappings (SQLite) into their keys.
    values = [_summary_values(r) for r in rows] if rows and isinstance(rows[0], Mapping) else rows
    return _summary_records(values, leases, active)


# ------------------------------------------------------------------------------------ jobs


def _job_record(row: _Row) -> dict[str, Any]:
    return {
        "job_id": row["job_id"],
        "graph_id": row["graph_id"],
        "job_name": row["job_name"],
        "status": row["status"],
        "status_reason": row["status_reason"],
        "daemon": bool(row["daemon"]),
        "submitted_at": row["submitted_at"],
        "updated_at": row["updated_at"],
        "root_agent_ids": _raw(row["root_agent_ids"]),
        "placement_policy": row["placement_policy"],
        "recovery_policy": row["recovery_policy"],
        "max_agent_restart_attempts": row["max_agent_restart_attempts"],
        "result": _raw(row["result"]),
        "node": row["node"],
        "recovery_count": row["recovery_count"],
        "last_sequence": row["last_sequence"],
        "last_hash": row["last_hash"],
        "manifest_ref": _raw(row["manifest_ref"]),
        "bundle": _raw(row["bundle"]),
        "idempotency_key": row["idempotency_key"],
    }


def _agent_status(row: _Row, job_status: str, in_flight: bool) -> str:
    executor = row["agent_type"] in COMMAND_TYPES
    if job_status == "paused":
        return "paused"
    if executor:
        if row["last_error"] is not None:
            return "error"
        if in_flight:
            return "running"
        if row["mailbox_depth"] > 0:
            return "queued"
        return "completed" if row["runs"] > 0 else "ready"
    return "busy" if in_flight or row["mailbox_depth"] > 0 else "ready"


def _agent_summary(
    row: _Row, *, job_status: str, node: str | None, live: bool, heartbeat: str | None
) -> dict[str, Any]:
    # A message is in flight only while the job runs: after the terminal event the owner has
    # stopped every agent, even if no `message_processed` closed the step.
    in_flight = row["inflight_message_id"] is not None and job_status not in TERMINAL_STATUSES
    return {
        "agent_id": row["agent_id"],
        "agent_type": row["agent_type"],
        "type": row["template"],
        "role": row["role"],
        "assigned_node": node,
        "processed_messages": row["processed_messages"],
        "mailbox_depth": row["mailbox_depth"],
        "paused?": job_status == "paused",
        "last_heartbeat_at": heartbeat,
        "live?": live,
        "status": _agent_status(row, job_status, in_flight),
        "running?": row["agent_type"] in COMMAND_TYPES and in_flight,
        "last_error": row["last_error"],
        "sandbox_name": row["sandbox_name"],
        "lease": {"lease_id": row["lease_id"], "pool": row["lease_pool"], "slots": row["lease_slots"]},
    }


def _sandboxes(agent_rows: Iterable[_Row]) -> list[dict[str, Any]]:
    """SandboxSummary records from the agents' last-sandbox columns (Appendix B.7)."""
    found = [
        {
            "agent_id": r["agent_id"],
            "sandbox_name": r["sandbox_name"],
            "exit_code": r["sandbox_exit_code"],
            "pool": r["sandbox_pool"],
            "timestamp": r["sandbox_at"],
        }
        for r in agent_rows
        if r["sandbox_name"] is not None
    ]
    return sorted(found, key=lambda s: (s["agent_id"], s["sandbox_name"]))


async def _heartbeat(conn: AsyncConnection, node: str) -> str | None:
    row = await _HEARTBEAT.first(conn, {"b_node": node})
    return None if row is None else format_ms(row["last_heartbeat_ms"])


async def job_details(conn: AsyncConnection, job_id: str, *, now_ms: int) -> dict[str, Any] | None:
    """The §2.9 details of a job (job, summary, agents, recent_events, sandboxes); None if unknown."""
    row = await JOB_ROW.first(conn, {"b_job_id": job_id})
    if row is None:
        return None
    # Sorted here, not by the database: agent ids in code-point order whatever the collation.
    agent_rows = sorted(await _AGENTS_OF_JOB.rows(conn, {"b_job_id": job_id}), key=lambda r: r["agent_id"])
    leases = await _live_leases(conn, [job_id], now_ms) if row["status"] in OWNED_STATUSES else {}
    live = _is_live(row["status"], job_id, leases)
    heartbeat = await _heartbeat(conn, leases[job_id]) if job_id in leases else None
    active = sum(
        1
        for a in agent_rows
        if a["agent_type"] in COMMAND_TYPES
        and a["inflight_message_id"] is not None
        and row["status"] not in TERMINAL_STATUSES
    )
    recent = await read_stream_rows(conn, job_id, limit=RECENT_EVENTS, newest_first=True)
    return {
        "job": _job_record(row),
        "summary": _summary_records([_summary_values(row)], leases, {job_id: active})[0],
        "agents": [
            _agent_summary(a, job_status=row["status"], node=row["node"], live=live, heartbeat=heartbeat)
            for a in agent_rows
        ],
        "recent_events": [api_record(e) for e in recent],
        "sandboxes": _sandboxes(agent_rows),
    }


async def job_status(conn: AsyncConnection, job_id: str) -> str | None:
    """The current status of a job; None when it does not exist (or was cleaned up)."""
    row = await _STATUS.first(conn, {"b_job_id": job_id})
    return None if row is None else str(row["status"])


async def stream_tip(conn: AsyncConnection, job_id: str) -> StreamTip | None:
    """The status and last sequence of a job; None when it does not exist (or was cleaned up)."""
    row = await _TIP.first(conn, {"b_job_id": job_id})
    return None if row is None else StreamTip(row["status"], row["last_sequence"])


def _page_query(*, status: bool, graph_id: bool, after: bool) -> Prepared:
    """The page statement of one combination of filters (bound as b_status, b_graph_id, b_after_*)."""
    conditions: list[ColumnElement[bool]] = []
    if status:
        conditions.append(jobs.c.status == bindparam("b_status"))
    if graph_id:
        conditions.append(jobs.c.graph_id == bindparam("b_graph_id"))
    if after:
        updated_at: Any = bindparam("b_after_updated_at")
        job_id: Any = bindparam("b_after_job_id")
        # Strictly after the cursor row in (updated_at desc, job_id desc) order. The first
        # conjunct is a plain range on the index's leading sort column on both dialects.
        conditions.append(jobs.c.updated_at <= updated_at)
        conditions.append(or_(jobs.c.updated_at < updated_at, jobs.c.job_id < job_id))
    return Prepared(
        select(*_SUMMARY_COLUMNS)
        .where(and_(true(), *conditions))
        .order_by(jobs.c.updated_at.desc(), jobs.c.job_id.desc())
        .limit(bindparam("b_limit"))
    )


_PAGES = {
    (status, graph_id, after): _page_query(status=status, graph_id=graph_id, after=after)
    for status in (False, True)
    for graph_id in (False, True)
    for after in (False, True)
}


async def _page(
    conn: AsyncConnection, *, status: str | None, graph_id: str | None, after: tuple[str, str] | None, limit: int
) -> list[_Row]:
    values: dict[str, Any] = {"b_limit": limit}
    if status is not None:
        values["b_status"] = status
    if graph_id is not None:
        values["b_graph_id"] = graph_id
    if after is not None:
        values["b_after_updated_at"], values["b_after_job_id"] = after
    query = _PAGES[(status is not None, graph_id is not None, after is not None)]
    return await query.rows(conn, values)


async def list_jobs(
    conn: AsyncConnection,
    *,
    limit: int,
    after: tuple[str, str] | None = None,
    statuses: frozenset[str] | None = None,
    graph_id: str | None = None,
    now_ms: int,
) -> JobPage:
    """JobSummaries newest `updated_at` first (ties: job_id descending), strictly after `after`."""
    # `statuses` None means every status. With a status filter each status is read from the
    # (status, updated_at, job_id) index with its own LIMIT and the sorted streams are merged, so
    # a page never reads more than len(statuses) * (limit + 1) rows.
    if (statuses is not None and not statuses) or (graph_id is not None and not _storable(graph_id)):
        return JobPage([], None)
    wanted = limit + 1
    if statuses is None:
        rows = await _page(conn, status=None, graph_id=graph_id, after=after, limit=wanted)
    else:
        per_status = [
            await _page(conn, status=s, graph_id=graph_id, after=after, limit=wanted) for s in sorted(statuses)
        ]
        merged = heapq.merge(*per_status, key=lambda r: (r["updated_at"], r["job_id"]), reverse=True)
        rows = [r for _, r in zip(range(wanted), merged, strict=False)]
    page = rows[:limit]
    cursor = encode_cursor(page[-1]["updated_at"], page[-1]["job_id"]) if len(rows) > limit else None
    return JobPage(await _summaries(conn, page, now_ms), cursor)


async def submission_by_key(conn: AsyncConnection, idempotency_key: str) -> Submission | None:
    """The job whose `job_submitted` carries this Idempotency-Key, if any (unique index)."""
    row = (
        await conn.execute(
            select(jobs.c.job_id, jobs.c.status, jobs.c.request_sha256).where(
                jobs.c.idempotency_key == idempotency_key
            )
        )
    ).first()
    return None if row is None else Submission(row.job_id, row.status, row.request_sha256)


# ------------------------------------------------------------------------------------ system


async def job_counts(conn: AsyncConnection) -> dict[str, int]:
    """Number of jobs per status, all seven statuses present."""
    rows = await conn.execute(select(jobs.c.status, func.count().label("n")).group_by(jobs.c.status))
    counts = dict.fromkeys(ALL_STATUSES, 0)
    for r in rows:
        counts[r.status] = int(r.n)
    return counts


def _pool_stats(capacities: Any, usage: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    stats: dict[str, dict[str, int]] = {}
    for pool, value in sorted((capacities or {}).items()):
        capacity = int(value["capacity"] if isinstance(value, dict) else value)
        used = usage.get(pool, {})
        in_use = used.get("in_use", 0)
        stats[pool] = {
            "capacity": capacity,
            "in_use": in_use,
            "available": max(capacity - in_use, 0),
            "queued": used.get("queued", 0),
            "active": used.get("active", 0),
        }
    return stats


async def _pool_usage(
    conn: AsyncConnection, incarnations: dict[str, str]
) -> dict[str, dict[str, dict[str, int]]]:
    """node → pool → {in_use, active, queued} from the `executor_leases` mirror of live incarnations."""
    if not incarnations:
        return {}
    rows = await conn.execute(
        select(
            executor_leases.c.node,
            executor_leases.c.incarnation,
            executor_leases.c.pool,
            executor_leases.c.state,
            func.count().label("n"),
            func.coalesce(func.sum(executor_leases.c.slots), 0).label("slots"),
        )
        .where(in_list(executor_leases.c.node, sorted(incarnations)))
        .group_by(
            executor_leases.c.node,
            executor_leases.c.incarnation,
            executor_leases.c.pool,
            executor_leases.c.state,
        )
    )
    usage: dict[str, dict[str, dict[str, int]]] = {}
    for r in rows:
        if incarnations.get(r.node) != r.incarnation:
            continue
        pool = usage.setdefault(r.node, {}).setdefault(r.pool, {})
        if r.state == "held":
            pool["in_use"] = pool.get("in_use", 0) + int(r.slots)
            pool["active"] = pool.get("active", 0) + int(r.n)
        elif r.state == "queued":
            pool["queued"] = pool.get("queued", 0) + int(r.n)
    return usage


async def _active_jobs(conn: AsyncConnection, incarnations: Sequence[str], now_ms: int) -> dict[str, int]:
    """incarnation → unexpired, unreleased job leases it holds."""
    if not incarnations:
        return {}
    rows = await conn.execute(
        select(job_leases.c.incarnation, func.count().label("n"))
        .where(
            and_(
                in_list(job_leases.c.incarnation, incarnations),
                job_leases.c.released.is_(False),
                job_leases.c.expires_at_ms > now_ms,
            )
        )
        .group_by(job_leases.c.incarnation)
    )
    return {r.incarnation: int(r.n) for r in rows}


async def list_nodes(conn: AsyncConnection, *, serving_node: str, now_ms: int) -> list[dict[str, Any]]:
    """NodeSummaries (SPEC §10.3) of alive nodes and of nodes lost/stopped within the hour, by name."""
    rows = sorted(
        (
            await conn.execute(
                select(nodes).where(
                    or_(nodes.c.status == "alive", nodes.c.status_changed_ms >= now_ms - NODE_MEMORY_MS)
                )
            )
        ).all(),
        key=lambda r: r.name,
    )
    alive = [r for r in rows if r.status == "alive"]
    connected = sorted(r.name for r in alive)
    active = await _active_jobs(conn, [r.incarnation for r in rows], now_ms)
    usage = await _pool_usage(conn, {r.name: r.incarnation for r in alive if r.runtime_enabled})
    return [
        {
            "name": r.name,
            "status": r.status,
            "started_at": format_ms(r.started_at_ms),
            "last_heartbeat_at": format_ms(r.last_heartbeat_ms),
            "connected_nodes": connected,
            "self?": r.name == serving_node,
            "scheduler_hint": "cluster_member" if r.name == serving_node else "remote_member",
            "api_enabled": bool(r.api_enabled),
            "runtime_enabled": bool(r.runtime_enabled),
            "active_jobs": active.get(r.incarnation, 0),
            "executor_pools": (
                _pool_stats(_json(r.executor_pools), usage.get(r.name, {}))
                if r.status == "alive" and r.runtime_enabled
                else {}
            ),
            "hardware": _json(r.hardware),
        }
        for r in rows
    ]


async def system_summary(conn: AsyncConnection, *, serving_node: str, now_ms: int) -> dict[str, Any]:
    """The §2.5 summary: nodes, the 100 most recently updated jobs, total and per-status counts."""
    counts = await job_counts(conn)
    page = await list_jobs(conn, limit=SUMMARY_JOBS, now_ms=now_ms)
    return {
        "nodes": await list_nodes(conn, serving_node=serving_node, now_ms=now_ms),
        "jobs": page.data,
        "jobs_total": sum(counts.values()),
        "job_counts": counts,
    }


# ------------------------------------------------------------------------------------ bundles


async def bundle_view(conn: AsyncConnection, bundle_id: str) -> dict[str, Any] | None:
    """The bundle projection (current accepted version and history); None if not registered."""
    row = (await conn.execute(select(bundles.c.view).where(bundles.c.bundle_id == bundle_id))).first()
    return None if row is None else dict(json.loads(row.view))


async def registered_bundle_views(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Every registered bundle's projection (the interval scanner's input), in no particular order."""
    return [dict(json.loads(r.view)) for r in await conn.execute(select(bundles.c.view))]


async def bundle_detail(conn: AsyncConnection, bundle_id: str) -> dict[str, Any] | None:
    """BundleDetail (SPEC §9.6); None if not registered."""
    view = await bundle_view(conn, bundle_id)
    return None if view is None else bundle_views.detail(view)


async def list_bundles(conn: AsyncConnection) -> list[dict[str, Any]]:
    """BundleSummaries sorted by bundle_id."""
    rows = (await conn.execute(select(bundles.c.bundle_id, bundles.c.view))).all()
    return [bundle_views.summary(json.loads(r.view)) for r in sorted(rows, key=lambda r: r.bundle_id)]
