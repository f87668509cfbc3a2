"""Submits (SPEC §3.1–§3.2): a new job, or the answer of an earlier submit with the same Idempotency-Key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.domain.job import AdmitJob, Command, Rejected, SubmitJob, submitted_payload
from app.service.group_commit import GroupCommit
from app.service.outcomes import IdempotencyMismatch, Submitted, new_job_id
from app.service.retry import retried
from app.store import read_model
from app.store.database import Database
from app.store.event_store import ConcurrencyConflict


class Submissions:
    """Draws the job id, records `job_submitted` through the write path, answers a repeated key."""

    def __init__(self, db: Database, clock: Callable[[], int], writes: GroupCommit) -> None:
        self.db = db
        self.clock = clock
        self.writes = writes

    async def submit(
        self,
        *,
        manifest: dict[str, Any],
        bundle: dict[str, Any] | None,
        idempotency_key: str | None,
        request_sha256: str,
        admitting_node: str | None,
    ) -> Submitted:
        """Record `job_submitted` (admitted by `admitting_node` in the same commit, if given), or replay a key."""
        payload = submitted_payload(
            manifest=manifest, bundle=bundle, idempotency_key=idempotency_key, request_sha256=request_sha256
        )

        async def attempt() -> Submitted:
            if idempotency_key is not None:
                earlier = await self._by_idempotency_key(idempotency_key, request_sha256)
                if earlier is not None:
                    return earlier
            job_id = new_job_id(manifest["graph_id"], self.clock())
            # With a runtime node in this process, the job is admitted in the submit's own commit
            # (SPEC §3.2: a node admits at once what its API accepts); should that admission be
            # dropped, the node's next poll admits the job.
            admit: list[Command] = [] if admitting_node is None else [AdmitJob(admitting_node)]
            outcome = (await self.writes.execute_chain(job_id, [SubmitJob(payload), *admit]))[0]
            if isinstance(outcome, Rejected | ConcurrencyConflict):
                # The key or the generated id is taken: look again (of two concurrent requests
                # with one key, the unique index lets one insert).
                raise ConcurrencyConflict(job_id)
            if isinstance(outcome, BaseException):
                raise outcome
            assert outcome.projection is not None
            return Submitted(job_id, outcome.projection.job.status, replayed=False)

        return await retried(attempt, "submit")

    async def _by_idempotency_key(self, key: str, request_sha256: str) -> Submitted | None:
        async with self.db.read() as conn:
            earlier = await read_model.submission_by_key(conn, key)
        if earlier is None:
            return None
        if earlier.request_sha256 != request_sha256:
            raise IdempotencyMismatch(key)
        return Submitted(earlier.job_id, earlier.status, replayed=True)
