"""Wake-ups across processes on Postgres: a commit that gives runtime nodes work NOTIFYs them.

A node reacts at once to what its own process commits (`Service.subscribe`); what other
processes commit it used to see only at its next poll. On Postgres a process whose commits give
nodes work sends a notification on `CHANNEL` right after them (`Notifier._announce`: in the
background, coalesced, never failing the write), and every runtime node LISTENs on a connection
of its own. The payload is lines of text: the sender's origin (so a process ignores its own),
then `admit` (a job was submitted), `claim` (a job was queued) and `job <id>` (a pause, resume,
cancel or external message of that job). Polling stays: a lost notification (a listener
reconnecting) costs at most one poll interval, as before. SQLite has no such channel; its nodes
poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import bindparam, func, select

from app.domain import events as ev
from app.domain.events import Event
from app.store.database import Database, Prepared

log = logging.getLogger(__name__)

CHANNEL = "mirror_neuron"
# Postgres refuses payloads of 8,000 bytes or more: past this, the job lines become `job *`.
MAX_PAYLOAD = 7_000
# A listener whose connection failed tries again after this long (the poll covers the gap).
RETRY_SECONDS = 1.0
_CHANGES = frozenset({ev.JOB_PAUSED, ev.JOB_RESUMED, ev.JOB_CANCELLED})

_NOTIFY = Prepared(select(func.pg_notify(CHANNEL, bindparam("b_payload"))))


@dataclass
class Wakeup:
    """What a notification (or a commit of this process) asks runtime nodes to do."""

    admit: bool = False
    claim: bool = False
    jobs: set[str] = field(default_factory=set)
    every_job: bool = False

    def __bool__(self) -> bool:
        return self.admit or self.claim or self.every_job or bool(self.jobs)

    def merge(self, other: Wakeup) -> None:
        """Add what `other` asks for."""
        self.admit = self.admit or other.admit
        self.claim = self.claim or other.claim
        self.every_job = self.every_job or other.every_job
        self.jobs |= other.jobs


def wakeup_of(committed: Iterable[tuple[str, list[Event]]]) -> Wakeup:
    """The wake-up a transaction's events call for (stream id, events of one command).

    The one rule of which committed events wake runtime nodes: the service announces it to other
    processes (`Notifier._announce`) and a node applies it to its own process's commits
    (`Scheduler.on_commit`).
    """
    wake = Wakeup()
    for stream_id, recorded in committed:
        for event in recorded:
            if event.type == ev.JOB_SUBMITTED:
                wake.admit = True
            elif event.type == ev.JOB_QUEUED:
                wake.claim = True
            elif event.type in _CHANGES or (
                event.type == ev.MESSAGE_DELIVERED and event.payload.get("route") == "external"
            ):
                wake.jobs.add(stream_id)
    return wake


def encode(origin: str, wake: Wakeup) -> str:
    """The notification payload."""
    lines = [origin, *(["admit"] if wake.admit else []), *(["claim"] if wake.claim else [])]
    jobs = ["job *"] if wake.every_job else [f"job {j}" for j in sorted(wake.jobs)]
    text = "\n".join([*lines, *jobs])
    return text if len(text) <= MAX_PAYLOAD else "\n".join([*lines, "job *"])


def decode(payload: str) -> tuple[str, Wakeup]:
    """(origin, wake-up) of a payload; unknown lines are ignored (a newer sender)."""
    origin, *lines = payload.split("\n")
    wake = Wakeup()
    for line in lines:
        if line == "admit":
            wake.admit = True
        elif line == "claim":
            wake.claim = True
        elif line == "job *":
            wake.every_job = True
        elif line.startswith("job "):
            wake.jobs.add(line[4:])
    return origin, wake


async def notify(conn: Any, origin: str, wake: Wakeup) -> None:
    """Send `wake` on `CHANNEL` (on an autocommit connection: at once)."""
    await _NOTIFY.rows(conn, {"b_payload": encode(origin, wake)})


def _listen_arguments(db: Database) -> dict[str, Any]:
    """asyncpg.connect keyword arguments for the database's URL (the dialect's own translation)."""
    engine = db.writer
    _, params = engine.dialect.create_connect_args(engine.url)
    accepted = inspect.signature(asyncpg.connect).parameters
    return {k: v for k, v in params.items() if k in accepted}


class Listener:
    """A dedicated connection LISTENing on `CHANNEL`; calls `on_wakeup` for other processes' notifications.

    It reconnects after a lost connection (every `RETRY_SECONDS`) and never raises: without it
    the node still polls.
    """

    def __init__(self, db: Database, origin: str, on_wakeup: Callable[[Wakeup], None]) -> None:
        self.db = db
        self.origin = origin
        self.on_wakeup = on_wakeup
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start listening in the background."""
        self._task = asyncio.create_task(self._run(), name="wakeup-listener")

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _received(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        origin, wake = decode(payload)
        if origin != self.origin and wake:
            self.on_wakeup(wake)

    async def _run(self) -> None:
        while True:
            try:
                await self._listen_once()
                log.info("wake-up listener lost its connection; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("wake-up listener could not connect: %s", type(exc).__name__)
            await asyncio.sleep(RETRY_SECONDS)

    async def _listen_once(self) -> None:
        """Listen until the connection is lost."""
        conn = await asyncpg.connect(**_listen_arguments(self.db))
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(CHANNEL, self._received)
            self.connected.set()
            # What was committed while nobody listened would wait for the next poll: ask for it now.
            self.on_wakeup(Wakeup(admit=True, claim=True, every_job=True))
            await lost.wait()
        finally:
            self.connected.clear()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=2)


def listen(db: Database, origin: str, on_wakeup: Callable[[Wakeup], None]) -> Listener | None:
    """A started `Listener` on Postgres; None on SQLite, whose nodes only poll."""
    if not db.is_postgres:
        return None
    listener = Listener(db, origin, on_wakeup)
    listener.start()
    return listener
