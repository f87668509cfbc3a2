"""`mirror-neuron audit`: replay a job's events as an outside auditor and compare with the API.

Over HTTP only, through `app.client`: stream `GET /jobs/{id}/events` (NDJSON), recompute the SPEC §1.3
hash chain (each event by its `hash_alg`: RFC 8785 for `jcs-sha256`, Appendix B.2 for `pyjson-sha256`, C.1.3),
fold the events with the same pure `fold` the server uses (upcasters included), then compare
every event-derived field of `GET /jobs/{id}`. `--cleanups` is the operator's check of the
`jobs_cleaned` audit records and needs database access (SPEC Appendix B.25).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from app.client import ApiError, Client
from app.domain.canonical import HASH_ALGORITHMS, JCS, PYJSON, event_hash
from app.domain.events import Event
from app.domain.projection import AgentView, JobProjection, JobView, fold
from app.wire import JobRecord

# Every field of the API's job record is event-derived: the replay's JobView has each (tests/unit/test_wire.py).
JOB_FIELDS = JobRecord.__struct_fields__
SUMMARY_FIELDS = ("nodes", "sandbox_names", "last_event", "executor_count", "status", "updated_at")
AGENT_FIELDS = ("agent_type", "role", "processed_messages", "mailbox_depth", "last_error", "sandbox_name")


class AuditError(Exception):
    """The server could not be read (not a finding about the log)."""

    @classmethod
    def of(cls, exc: ApiError) -> AuditError:
        """The client's error as the audit reports it."""
        return cls(exc.error if exc.status == 0 else f"the server answered {exc.status}: {exc.error}")


@dataclass
class ChainCheck:
    """Recomputes the hash chain of one job stream while its events go by."""

    job_id: str
    findings: list[str] = field(default_factory=list)
    previous: str = ""
    sequence: int = 0
    seen_jcs: bool = False

    def check(self, record: dict[str, Any]) -> Event:
        """Verify one API event record (either hash algorithm, SPEC C.1.3) and return it as an Event."""
        self.sequence += 1
        where = f"event {record.get('sequence')} ({record.get('type')}, {record.get('event_id')})"
        if record.get("sequence") != self.sequence:
            self.findings.append(f"{where}: expected sequence {self.sequence}")
            self.sequence = int(record.get("sequence") or self.sequence)
        alg = record.get("hash_alg")
        if alg not in HASH_ALGORITHMS:
            self.findings.append(f"{where}: unknown hash_alg {json.dumps(alg)}")
        elif alg == PYJSON and self.seen_jcs:
            self.findings.append(f"{where}: {PYJSON} after {JCS} events (the stream goes back)")
        else:
            self.seen_jcs = self.seen_jcs or alg == JCS
            self._recompute(record, where, alg)
        self.previous = record["hash"]
        return Event(
            position=record["position"], stream_id=self.job_id, sequence=record["sequence"],
            event_id=record["event_id"], type=record["type"], timestamp=record["timestamp"],
            job_id=self.job_id, agent_id=record["agent_id"], payload=record["payload"], hash=record["hash"],
            hash_alg=str(alg),
        )

    def _recompute(self, record: dict[str, Any], where: str, alg: str) -> None:
        # The record was read with exact integers (json.loads): a pyjson-sha256 payload is hashed
        # over json.dumps of exactly those; canonical_json writes a large one as its double.
        try:
            recomputed = event_hash(
                prev_hash=self.previous, stream_id=self.job_id, sequence=record["sequence"],
                event_id=record["event_id"], type_=record["type"], timestamp=record["timestamp"],
                agent_id=record["agent_id"], payload=record["payload"], hash_alg=alg,
            )
        except (TypeError, ValueError) as exc:
            self.findings.append(f"{where}: payload cannot be canonicalised ({alg}): {exc}")
            return
        if recomputed != record["hash"]:
            self.findings.append(f"{where}: hash mismatch: recorded {record['hash']}, recomputed {recomputed}")


def _api_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _expected_job(job: JobView) -> dict[str, Any]:
    return {name: _api_value(getattr(job, name)) for name in JOB_FIELDS}


def _expected_summary(job: JobView) -> dict[str, Any]:
    return {name: _api_value(getattr(job, name)) for name in SUMMARY_FIELDS}


def _expected_agent(agent: AgentView) -> dict[str, Any]:
    values = {name: getattr(agent, name) for name in AGENT_FIELDS}
    values["type"] = agent.template
    values["lease"] = {"lease_id": agent.lease_id, "pool": agent.lease_pool, "slots": agent.lease_slots}
    return values


def _differences(label: str, expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    return [
        f"{label}.{key}: api={json.dumps(actual.get(key))} replay={json.dumps(value)}"
        for key, value in expected.items()
        if actual.get(key) != value
    ]


def compare(projection: JobProjection, details: dict[str, Any]) -> list[str]:
    """Every event-derived field of `GET /jobs/{id}` that differs from the replay."""
    findings = _differences("job", _expected_job(projection.job), details["job"])
    findings += _differences("summary", _expected_summary(projection.job), details["summary"])
    api_agents = {a["agent_id"]: a for a in details["agents"]}
    for agent_id, agent in sorted(projection.agents.items()):
        if agent_id not in api_agents:
            findings.append(f"agents[{agent_id}]: missing from the API")
            continue
        findings += _differences(f"agents[{agent_id}]", _expected_agent(agent), api_agents[agent_id])
    findings += [f"agents[{a}]: not in the replay" for a in sorted(set(api_agents) - set(projection.agents))]
    return findings


@dataclass
class JobAudit:
    """The verdict on one job."""

    job_id: str
    events: int
    head: str
    findings: list[str]

    @property
    def ok(self) -> bool:
        """True when the log is intact and the API shows exactly its replay."""
        return not self.findings


def _replay(chain: ChainCheck, records: Iterable[dict[str, Any]], state: JobProjection | None) -> JobProjection | None:
    return fold((chain.check(r) for r in records), state)


def _records(client: Client, job_id: str, after: int) -> Iterator[dict[str, Any]]:
    """The job's events after `after` as the API wrote them (streamed, constant memory)."""
    for event in client.iter_events(job_id, after=after):
        yield msgspec.to_builtins(event)


def audit_job(client: Client, job_id: str, *, attempts: int = 5) -> JobAudit:
    """Audit one job; a live job is re-read until the replay and the API describe the same head."""
    try:
        chain = ChainCheck(job_id)
        state = _replay(chain, _records(client, job_id, 0), None)
        for _ in range(attempts):
            details = msgspec.to_builtins(client.job(job_id))
            if state is not None and details["job"]["last_sequence"] == state.job.last_sequence:
                break
            state = _replay(chain, _records(client, job_id, chain.sequence), state)
    except ApiError as exc:
        raise AuditError.of(exc) from None
    if state is None:
        return JobAudit(job_id, 0, "", chain.findings + ["the job has no events"])
    findings = chain.findings + compare(state, details)
    return JobAudit(job_id, chain.sequence, state.job.last_hash, findings)


def all_job_ids(client: Client) -> Iterator[str]:
    """Every job id the API lists, page by page."""
    try:
        for job in client.iter_jobs(page_size=1000):
            yield job.job_id
    except ApiError as exc:
        raise AuditError.of(exc) from None


@dataclass
class CleanupAudit:
    """The verdict on the `jobs_cleaned` records of the system stream."""

    records: int
    checked_against_archive: int
    findings: list[str]


def _archived_streams(archive: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    streams: dict[str, list[dict[str, Any]]] = {}
    for record in archive:
        streams.setdefault(record["job_id"], []).append(record)
    for records in streams.values():
        records.sort(key=lambda r: r["sequence"])
    return streams


def _check_archive(job_id: str, records: list[dict[str, Any]], cleaned: dict[str, Any]) -> list[str]:
    chain = ChainCheck(job_id)
    replay = fold(chain.check(r) for r in records)
    findings = [f"archive of {job_id}: {f}" for f in chain.findings]
    label = f"jobs_cleaned[{job_id}]"
    if cleaned["event_counts"].get(job_id) != len(records):
        findings.append(f"{label}: event_count {cleaned['event_counts'].get(job_id)} but the archive holds {len(records)}")
    if cleaned["last_hashes"].get(job_id) != chain.previous:
        findings.append(f"{label}: last_hash {cleaned['last_hashes'].get(job_id)} but the archive ends with {chain.previous}")
    if replay is not None and cleaned["statuses"].get(job_id) != replay.job.status:
        findings.append(f"{label}: status {cleaned['statuses'].get(job_id)} but the archive replays to {replay.job.status}")
    return findings


async def audit_cleanups(db: Any, archive: Iterable[dict[str, Any]] | None = None) -> CleanupAudit:
    """Check the system stream's chain, that cleaned jobs left nothing behind, and the archive."""
    from app.store import event_store, read_model

    async with db.read() as conn:
        chain = ChainCheck("system")
        # Records as the API would serve them, each payload read from its stored text with exact
        # integers (what a pyjson-sha256 hash was computed over).
        system = [
            chain.check({**event_store.api_record(row), "payload": json.loads(row["payload"])})
            for row in await event_store.read_stream_rows(conn, "system")
        ]
        findings = [f"system stream: {f}" for f in chain.findings]
        cleaned = [e for e in system if e.type == "jobs_cleaned"]
        for record in cleaned:
            for job_id in record.payload["job_ids"]:
                left = await event_store.stream_length(conn, job_id)
                row_left = await read_model.job_status(conn, job_id) is not None
                if left or row_left:
                    findings.append(f"jobs_cleaned[{job_id}] (system event {record.sequence}): {left} events and "
                                    f"{'a' if row_left else 'no'} jobs row remain")
    streams = _archived_streams(archive) if archive is not None else {}
    checked = 0
    for record in cleaned:
        for job_id in record.payload["job_ids"]:
            if job_id in streams:
                checked += 1
                findings += _check_archive(job_id, streams[job_id], record.payload)
    return CleanupAudit(len(cleaned), checked, findings)
