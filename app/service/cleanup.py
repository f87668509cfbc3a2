"""Cleanup (SPEC §11): delete terminal (or all) jobs, one transaction and one `jobs_cleaned` audit event each."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

from app.domain import events as ev
from app.domain.canonical import format_ms
from app.domain.events import NewEvent
from app.domain.job import CANCELLED_BY_CLEANUP, CancelJob, Command, Rejected
from app.service.notifications import Notifier
from app.service.outcomes import Cleaned, IdempotencyMismatch, Outcome
from app.service.streams import Marker, OtherStreams
from app.store import cleanup as cleanup_store
from app.store import event_store, projector
from app.store.database import Connection, Database

Execute = Callable[[str, Command], Awaitable[Outcome]]


class Cleanup:
    """Chooses the jobs, cancels live ones first (`all`), deletes each with its audit event."""

    def __init__(
        self,
        db: Database,
        clock: Callable[[], int],
        execute: Execute,
        streams: OtherStreams,
        notifier: Notifier,
    ) -> None:
        self.db = db
        self.clock = clock
        self.execute = execute
        self.streams = streams
        self.notifier = notifier

    async def cleanup(
        self,
        *,
        include_live: bool,
        older_than: int | None,
        node: str,
        idempotency_key: str | None = None,
        request_sha256: str | None = None,
    ) -> Cleaned:
        """Delete terminal (or all) jobs, each with its `jobs_cleaned` audit event (see `Service.cleanup`)."""
        prefix = None if idempotency_key is None else f"key:{idempotency_key} "
        earlier: list[str] = []
        if prefix is not None:
            async with self.db.read() as conn:
                found = await event_store.commands_with_prefix(conn, ev.SYSTEM_STREAM, prefix)
            if any(digest != request_sha256 for _, digest in found):
                raise IdempotencyMismatch(idempotency_key)
            earlier = [job_id for event, _ in found for job_id in event.payload["job_ids"]]
        cutoff = None if older_than is None else self.clock() - older_than * 1000
        async with self.db.read() as conn:
            candidates = await cleanup_store.candidates(conn, include_live=include_live, updated_by=cutoff)
        deleted: list[str] = []
        for job_id in candidates:
            if include_live:
                with contextlib.suppress(Rejected):  # already terminal, or gone meanwhile
                    await self.execute(job_id, CancelJob(CANCELLED_BY_CLEANUP))
            # With `all`, the age was judged when the candidates were chosen: the cancel just
            # appended moved updated_at to now and must not save the job from deletion.
            recheck = None if include_live else cutoff
            marker = None if prefix is None else (f"{prefix}{job_id}", request_sha256)
            if await self._delete_job(job_id, include_live, recheck, older_than, node, marker):
                deleted.append(job_id)
        return Cleaned(sorted({*earlier, *deleted}), replayed=bool(earlier))

    async def _delete_job(
        self,
        job_id: str,
        include_live: bool,
        cutoff: int | None,
        older_than: int | None,
        node: str,
        marker: Marker | None = None,
    ) -> bool:
        async def delete_and_audit(conn: Connection) -> list[NewEvent]:
            job = await projector.load_job(conn, job_id, lock=True)
            if job is None or (not include_live and not job.terminal):
                return []
            if cutoff is not None and job.updated_at > format_ms(cutoff):
                return []
            await cleanup_store.delete_job(conn, job_id)
            audit = {
                "job_ids": [job_id],
                "event_counts": {job_id: job.last_sequence},
                "last_hashes": {job_id: job.last_hash},
                "statuses": {job_id: job.status},
                "requested_all": include_live,
                "older_than": older_than,
                "node": node,
            }
            return [NewEvent(ev.JOBS_CLEANED, audit)]

        recorded = await self.streams.append_with(ev.SYSTEM_STREAM, delete_and_audit, marker)
        if recorded:
            self.notifier.tell(ev.SYSTEM_STREAM, recorded)
        return bool(recorded)
