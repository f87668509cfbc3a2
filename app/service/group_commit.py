"""Group commit: the queue in front of the write path, its batches, their retries and answers.

Commands that arrive while this process's write transactions are busy are queued and run
together in one transaction (`transaction.py`), so that N concurrent commands cost one BEGIN,
one lock of the position counter and one COMMIT instead of N. A command alone is a batch of
one; a batch that conflicts (or deadlocks) is rolled back and its commands rerun as batches of
one, each retried while another writer wins the race (`retry.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from app.domain.job import FENCED_COMMANDS, Command, Rejected, SubmitJob
from app.domain.job import command_id as derive_command_id
from app.ops import metrics, tracing
from app.ops import origin as ops_origin
from app.service.notifications import Notifier
from app.service.outcomes import IdempotencyMismatch, Outcome
from app.service.retry import retried
from app.service.transaction import Pending, Result, chain_broken, chain_dropped, decide_and_append
from app.store import event_store
from app.store.database import Database, is_conflict, is_database_error, is_unavailable
from app.store.event_store import ConcurrencyConflict
from app.store.leases import Fence, LeaseLost

# At most this many commands per transaction, and at most this many write transactions of one
# process at once on Postgres (one on SQLite: a single writer).
MAX_BATCH = 200
BATCHES_IN_FLIGHT = 1


def _needs_lookup(result: Result) -> bool:
    """Whether a command that carries an id may have committed in an earlier attempt.

    A command whose events are already in the log cannot append them again: its retry is
    rejected by `decide` (the step is processed, the job is no longer queued, ...), conflicts on
    the (stream_id, command_id) unique index, decides nothing (a second cancel), or finds the
    lease gone (its own terminal commit dropped it).
    """
    if isinstance(result, Outcome):
        return not result.events
    return isinstance(result, Rejected | ConcurrencyConflict | LeaseLost)


class _RunAlone(Exception):
    """A batch conflicted (or deadlocked): roll it back and run its commands one by one."""


def _settle(pending: Pending, result: Result) -> None:
    if pending.future.done():  # the caller was cancelled; the result is dropped
        return
    if isinstance(result, BaseException):
        pending.future.set_exception(result)
    else:
        pending.future.set_result(result)


class GroupCommit:
    """Executes job commands: queues them, commits them in batches, answers each caller."""

    def __init__(self, db: Database, clock: Callable[[], int], notifier: Notifier) -> None:
        self.db = db
        self.clock = clock
        self.notifier = notifier
        self._queue: list[Pending] = []
        self._in_flight = 0
        self._batch_tasks: set[asyncio.Task[None]] = set()

    async def execute_chain(
        self,
        job_id: str,
        commands: Sequence[Command],
        fence: Fence | None = None,
        *,
        command_ids: Sequence[str | None] | None = None,
        request_sha256: str | None = None,
    ) -> list[Result]:
        """Execute `commands` of one job in order, each only if the one before it appended events (see `Service`)."""
        chain = self._chain(job_id, commands, fence, command_ids, request_sha256)
        self._queue.extend(chain)
        self._start_batches()
        results: list[Result] = []
        try:
            for pending in chain:
                try:
                    results.append(await pending.future)
                except Exception as exc:
                    results.append(exc)
        except asyncio.CancelledError:
            for pending in chain:
                if pending in self._queue:  # not started yet: it never runs
                    self._queue.remove(pending)
            raise
        return results

    @staticmethod
    def _chain(
        job_id: str,
        commands: Sequence[Command],
        fence: Fence | None,
        command_ids: Sequence[str | None] | None,
        request_sha256: str | None,
    ) -> list[Pending]:
        loop = asyncio.get_running_loop()
        ids = list(command_ids) if command_ids is not None else [None] * len(commands)
        chain: list[Pending] = []
        lease = None if fence is None else f"{fence.incarnation}.{fence.token}"
        for command, given_id in zip(commands, ids, strict=True):
            if isinstance(command, FENCED_COMMANDS) and fence is None:
                raise ValueError(f"{type(command).__name__} must carry the job lease")
            after = chain[-1] if chain else None
            command_id = given_id if given_id is not None else derive_command_id(command, lease)
            digest = request_sha256 if command_id is not None else None
            chain.append(
                Pending(
                    job_id,
                    command,
                    fence,
                    loop.create_future(),
                    after,
                    ops_origin.capture(),
                    command_id=command_id,
                    request_sha256=digest,
                )
            )
        return chain

    def _start_batches(self) -> None:
        limit = BATCHES_IN_FLIGHT if self.db.is_postgres else 1
        while self._queue and self._in_flight < limit:
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._run_next_batch())
            self._batch_tasks.add(task)
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batch_tasks.discard(task)
        self._in_flight -= 1
        self._start_batches()

    async def _run_next_batch(self) -> None:
        """Run the next batch, taken from the queue when this task starts: one turn of the event
        loop after the command that started it, so that commands queued in the same turn share it.
        (Taken at once, the first of a claim's eight bootstraps went alone and the other seven in
        the next transaction: twice the statements per job, and a second commit to wait for.)"""
        batch = self._queue[:MAX_BATCH]
        del self._queue[:MAX_BATCH]
        if batch:
            await self._run_batch(batch)

    async def _run_batch(self, batch: list[Pending]) -> None:
        live = [p for p in batch if not p.future.done()]
        with tracing.write_transaction([p.origin.trace for p in live], [p.job_id for p in live]):
            await self._run_live(live)

    async def _run_live(self, live: list[Pending]) -> None:
        if len(live) > 1:
            try:
                results = await self._execute_many(live)
            except _RunAlone:
                results = None
            except BaseException as exc:  # the database failed: every command of the batch failed
                for p in live:
                    _settle(p, exc)
                if not isinstance(exc, Exception):
                    raise
                return
            if results is not None:
                await self._answer(live, results)
                return
        for i, p in enumerate(live):  # one command, or a batch that conflicted: a batch of one each
            try:
                await self._answer([p], [await self._execute_one(p)])
            except BaseException as exc:  # cancelled (loop shutdown): nobody may wait forever
                for q in live[i:]:
                    _settle(q, exc)
                raise

    async def _answer(self, batch: list[Pending], results: list[Result]) -> None:
        """Settle each command's future, in order, with its result or its earlier commit's replay."""
        for i, (p, result) in enumerate(zip(batch, results, strict=True)):
            try:
                result = await self._unless_committed(p, result)
            except BaseException as exc:  # cancelled: nobody may wait forever
                for q in batch[i:]:
                    _settle(q, exc)
                raise
            _settle(p, result)

    async def _unless_committed(self, p: Pending, result: Result) -> Result:
        """`result`, or the replay of the command's earlier commit if it appended nothing now.

        The check runs only when a command that carries an id appended nothing, never on the
        way of a command that appends: a first attempt pays nothing for being retriable.
        """
        if p.command_id is None or not _needs_lookup(result):
            return result
        try:
            async with self.db.read() as conn:
                found = (await event_store.committed_commands(conn, p.job_id, [p.command_id])).get(
                    p.command_id
                )
        except Exception as exc:
            if is_unavailable(exc):
                return exc  # unknown again: the caller retries
            raise
        if found is None:
            return result
        if found.request_sha256 != p.request_sha256:
            return IdempotencyMismatch(p.command_id)
        return Outcome(found.events, None, replayed=True)

    async def _execute_many(self, batch: list[Pending]) -> list[Result]:
        """The batch together in one transaction; raises _RunAlone if it conflicted."""
        try:
            results = await self._transaction(batch)
        except ConcurrencyConflict as exc:
            raise _RunAlone from exc
        except Exception as exc:  # a deadlock or serialization failure between batches
            if is_database_error(exc) and not is_unavailable(exc):
                raise _RunAlone from exc
            raise
        self._committed(batch, results)
        return results

    async def _execute_one(self, p: Pending) -> Result:
        """A batch of one, run again while another writer wins the race; returns its result."""
        if chain_broken(p, {}):
            return chain_dropped()
        with ops_origin.acting_for(p.origin):
            try:
                return await retried(lambda: self._attempt_alone(p), p.job_id)
            except Exception as exc:
                return exc

    async def _attempt_alone(self, p: Pending) -> Result:
        try:
            (result,) = await self._transaction([p])
        except ConcurrencyConflict as exc:
            if isinstance(p.command, SubmitJob):
                return exc  # a taken job id or Idempotency-Key: `submit` decides what to do
            if p.command_id is not None:
                # Perhaps its own earlier commit (the unique command id), else another writer.
                replay = await self._unless_committed(p, Outcome([], None))
                if not isinstance(replay, Outcome) or replay.replayed:
                    return replay
            raise
        if isinstance(result, Outcome):  # a command that failed alone committed nothing
            self._committed([p], [result])
        return result

    def _committed(self, batch: list[Pending], results: list[Result]) -> None:
        """After COMMIT: count the batch, then tell the listeners what each command appended."""
        metrics.batch_committed(len(batch))
        for p, result in zip(batch, results, strict=True):
            if isinstance(result, Outcome) and result.events and not result.replayed:
                with ops_origin.acting_for(p.origin):
                    self.notifier.committed(p.job_id, result.events)

    async def _transaction(self, batch: list[Pending]) -> list[Result]:
        """The batch in one transaction (`transaction.py`); ConcurrencyConflict if another writer took a key first."""
        try:
            async with self.db.write() as conn:
                return await decide_and_append(conn, batch, self.clock)
        except Exception as exc:
            if is_conflict(exc):  # a job id or an Idempotency-Key taken meanwhile
                raise ConcurrencyConflict(batch[0].job_id) from exc
            raise
