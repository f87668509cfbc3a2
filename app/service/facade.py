"""`Service`: the one object every writer holds; it owns no SQL and delegates to the parts of the package."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from app.domain import events as ev
from app.domain.bundle import BundleVersion
from app.domain.events import Event, NewEvent
from app.domain.job import Command
from app.service.bundle_commands import BundleCommands
from app.service.cleanup import Cleanup
from app.service.group_commit import GroupCommit
from app.service.notifications import Listener, Notifier
from app.service.outcomes import Cleaned, Outcome, Submitted, now_ms
from app.service.streams import Marker, OtherStreams, Write
from app.service.submissions import Submissions
from app.store import leases
from app.store.database import Connection, Database
from app.store.leases import Fence


class Service:
    """Executes commands against the event store; the only code that appends events."""

    def __init__(self, db: Database, clock: Callable[[], int] = now_ms) -> None:
        self.db = db
        self.clock = clock
        self.notifier = Notifier(db)
        # Names this process in its Postgres wake-up notifications, so that it ignores its own.
        self.origin = self.notifier.origin
        self.writes = GroupCommit(db, clock, self.notifier)
        self.streams = OtherStreams(db, clock)
        self.submissions = Submissions(db, clock, self.writes)
        self.bundles = BundleCommands(db, clock)
        self._cleanup = Cleanup(db, clock, self.execute, self.streams, self.notifier)
        # The runtime node of this process, if any: it admits what this process submits (see submit).
        self.admitting_node: str | None = None

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(stream_id, events)` after every commit made by this process."""
        self.notifier.subscribe(listener)

    # ------------------------------------------------------------ job commands

    async def execute(
        self,
        job_id: str,
        command: Command,
        fence: Fence | None = None,
        *,
        command_id: str | None = None,
        request_sha256: str | None = None,
    ) -> Outcome:
        """Decide and append `command` for one job; raises Rejected, LeaseLost or DatabaseUnavailable.

        Group commit: commands that arrive while this process's write transactions are busy are
        queued and executed together in one transaction (each against the state the previous
        ones left), so that N concurrent commands cost one BEGIN, one lock of the position
        counter and one COMMIT (one WAL flush) instead of N. A command alone is a batch of one.

        Exactly once: a command given a `command_id` appends its events to the job at most once.
        Executed again after it committed (a retry after a lost acknowledgement), it answers the
        events it appended then (`Outcome.replayed`); with a `request_sha256` (a keyed HTTP
        control) that differs from the first one's, it raises IdempotencyMismatch.
        """
        (result,) = await self.execute_chain(
            job_id, [command], fence, command_ids=[command_id], request_sha256=request_sha256
        )
        if isinstance(result, BaseException):
            raise result
        return result

    async def execute_chain(
        self,
        job_id: str,
        commands: Sequence[Command],
        fence: Fence | None = None,
        *,
        command_ids: Sequence[str | None] | None = None,
        request_sha256: str | None = None,
    ) -> list[Outcome | BaseException]:
        """Execute `commands` of one job in order, each only if the one before it appended events.

        They enter the group commit together, so they usually share one transaction; should the
        batch run its commands one by one, the order holds and a command whose predecessor
        appended nothing is dropped (`Rejected`). Returns each command's outcome or exception.
        `command_ids` (one per command, see `execute`) make each of them exactly once.
        """
        return await self.writes.execute_chain(
            job_id, commands, fence, command_ids=command_ids, request_sha256=request_sha256
        )

    async def submit(
        self,
        *,
        manifest: dict[str, Any],
        bundle: dict[str, Any] | None,
        idempotency_key: str | None,
        request_sha256: str,
    ) -> Submitted:
        """Record `job_submitted`, or answer an earlier submit with the same Idempotency-Key."""
        return await self.submissions.submit(
            manifest=manifest,
            bundle=bundle,
            idempotency_key=idempotency_key,
            request_sha256=request_sha256,
            admitting_node=self.admitting_node,
        )

    async def release_job(self, job_id: str, fence: Fence, *, graceful: bool, lease_lost: bool) -> None:
        """An owner stopped running a job: drop its executor lease rows and give the job lease up."""
        async with self.db.write() as conn:
            await leases.drop_executor_leases_of(conn, job_id, fence.incarnation)
            if not lease_lost:
                await leases.release(conn, job_id, fence, now_ms=self.clock(), graceful=graceful)

    # ------------------------------------------------------------ other streams

    async def append_system(self, new_events: Sequence[NewEvent]) -> list[Event]:
        """Append node and audit events to the `system` stream."""

        async def events(conn: Connection) -> Sequence[NewEvent]:
            return new_events

        return await self.append_with(ev.SYSTEM_STREAM, events)

    async def append_with(self, stream_id: str, write: Write, marker: Marker | None = None) -> list[Event]:
        """Run `write` and append the events it returns to `stream_id`, in one transaction.

        For streams with no projection row (`system`): `write` changes the operational rows it
        owns and says what to record. The whole transaction runs again while another writer
        takes the stream's next sequence first. `marker` (command id, request digest) marks the
        first event.
        """
        return await self.streams.append_with(stream_id, write, marker)

    # ------------------------------------------------------------ bundles

    async def scan_bundle(self, version: BundleVersion, node: str) -> list[Event]:
        """Register or update a bundle found by the startup scan (never over an uploaded version)."""
        return await self.bundles.scan_bundle(version, node)

    async def discover_bundle(self, version: BundleVersion, reason: str, node: str) -> list[Event]:
        """Register a bundle directory found after start (SPEC C.2.5); nothing if the id is registered."""
        return await self.bundles.discover_bundle(version, reason, node)

    async def upload_bundle(
        self, version: BundleVersion, archive: bytes, expanded_bytes: int, node: str
    ) -> list[Event]:
        """Store an uploaded version's archive and record it (SPEC C.2.2), in one transaction."""
        return await self.bundles.upload_bundle(version, archive, expanded_bytes, node)

    async def reload_bundle(
        self,
        bundle_id: str,
        *,
        version: BundleVersion | None,
        fingerprint: str | None,
        errors: list[str],
        reason: str,
        node: str,
    ) -> list[Event]:
        """Record the outcome of a reload (SPEC §9.5); no event when nothing changed."""
        return await self.bundles.reload_bundle(
            bundle_id, version=version, fingerprint=fingerprint, errors=errors, reason=reason, node=node
        )

    # ------------------------------------------------------------ cleanup

    async def cleanup(
        self,
        *,
        include_live: bool,
        older_than: int | None,
        node: str,
        idempotency_key: str | None = None,
        request_sha256: str | None = None,
    ) -> Cleaned:
        """Delete terminal (or all) jobs, each with its `jobs_cleaned` audit event (SPEC §11).

        With an Idempotency-Key (SPEC C.5.9, scoped to the system stream) each audit event carries
        the command id `key:<key> <job_id>` (a key has no space): a retry answers the jobs the
        key deleted before, deletes only what is left (a first call cut short finishes), and
        never deletes or audits a job twice.
        """
        return await self._cleanup.cleanup(
            include_live=include_live,
            older_than=older_than,
            node=node,
            idempotency_key=idempotency_key,
            request_sha256=request_sha256,
        )
