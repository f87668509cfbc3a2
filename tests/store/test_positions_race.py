"""Global positions never skip (DESIGN §2 invariant 4) and one stream has one writer (invariant 3).

Many writers, each in its own transaction held open a few milliseconds around the append,
and one tailer reading `position > cursor` and moving the cursor to the last position it
saw. If a position could be handed out before its transaction commits, a writer sleeping
after taking it would commit behind the tailer's cursor and its event would be missed.
Postgres runs the writers truly concurrently (one connection each); SQLite has one writer
connection per process, so its writers queue, and the test shows the tailer is still exact.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from app.domain.events import Event, NewEvent
from app.store import event_store
from app.store.database import Database
from app.store.event_store import ConcurrencyConflict, StreamHead

WRITERS = 10
APPENDS = 50
NOW = 1_711_623_600_000


def _job_id(writer: int) -> str:
    return f"race_{writer}-1711623600000-{writer:012x}"


async def _sleep_ms(rng: random.Random, low: float = 1, high: float = 5) -> None:
    await asyncio.sleep(rng.uniform(low, high) / 1000)


async def test_a_tailer_misses_nothing_and_sees_nothing_twice(db: Database, backend: str) -> None:
    committed: list[Event] = []
    open_transactions = 0
    most_open = 0
    writers_done = asyncio.Event()

    async def writer(index: int) -> None:
        nonlocal open_transactions, most_open
        rng = random.Random(index)
        job_id = _job_id(index)
        head = StreamHead()
        for i in range(APPENDS):
            batch = [NewEvent("race", {"writer": index, "i": i, "k": k}) for k in range(1 + i % 3)]
            async with db.write() as conn:
                open_transactions += 1
                most_open = max(most_open, open_transactions)
                try:
                    sealed = event_store.seal(job_id, job_id, head, batch, NOW + i)
                    await _sleep_ms(rng)  # the transaction is open, its events not yet positioned
                    recorded = await event_store.insert_sealed(conn, sealed)
                    if rng.random() < 0.5:
                        await _sleep_ms(rng)  # positioned, not yet committed
                finally:
                    open_transactions -= 1
            committed.extend(recorded)
            head = StreamHead(recorded[-1].sequence, recorded[-1].hash, recorded[-1].timestamp)

    seen: list[Event] = []
    batches_while_writing = 0

    async def tailer() -> None:
        nonlocal batches_while_writing
        cursor = 0
        while True:
            finished = writers_done.is_set()
            async with db.read() as conn:
                batch = await event_store.read_job_events(conn, after=cursor)
            if batch:
                seen.extend(batch)
                cursor = batch[-1].position
                batches_while_writing += not finished
            elif finished:
                return
            await asyncio.sleep(0.0005)

    async def writers() -> None:
        try:
            await asyncio.gather(*(writer(w) for w in range(WRITERS)))
        finally:
            writers_done.set()

    await asyncio.wait_for(asyncio.gather(writers(), tailer()), timeout=120)

    assert len(committed) == WRITERS * sum(1 + i % 3 for i in range(APPENDS))
    seen_ids = [e.event_id for e in seen]
    assert len(seen_ids) == len(set(seen_ids)), "an event was seen twice"
    assert set(seen_ids) == {e.event_id for e in committed}, "an event was missed"
    positions = [e.position for e in seen]
    assert all(a < b for a, b in zip(positions, positions[1:], strict=False))
    assert positions == list(range(1, len(committed) + 1))  # gapless as well
    for w in range(WRITERS):
        sequences = [e.sequence for e in seen if e.stream_id == _job_id(w)]
        assert sequences == list(range(1, len(sequences) + 1))
    assert batches_while_writing > 10  # the tailer really raced the writers
    if backend == "postgres":
        assert most_open >= 8, most_open  # at least 8 transactions were open at once
    else:
        assert most_open == 1  # one writer connection: SQLite serialises in-process


async def _append_first(
    db: Database,
    stream: str,
    payload: dict[str, int],
    *,
    hold: float,
    appended: asyncio.Event | None = None,
    committing: asyncio.Event | None = None,
) -> list[Event]:
    """Append sequence 1 of `stream` and keep the transaction open `hold` seconds."""
    async with db.write() as conn:
        sealed = event_store.seal(stream, stream, StreamHead(), [NewEvent("race", payload)], NOW)
        recorded = await event_store.insert_sealed(conn, sealed)
        if appended is not None:
            appended.set()
        await asyncio.sleep(hold)
        if committing is not None:
            committing.set()
    return recorded


async def test_two_appends_at_one_sequence_have_one_winner(db: Database) -> None:
    stream = _job_id(99)
    appended, committing = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(
        _append_first(db, stream, {"writer": 1}, hold=0.2, appended=appended, committing=committing)
    )
    await appended.wait()  # the first holds sequence 1, uncommitted, for 200 ms
    with pytest.raises(ConcurrencyConflict):
        await _append_first(db, stream, {"writer": 2}, hold=0)
    assert committing.is_set()  # the loser blocked until the winner went on to commit
    winner = await first
    async with db.read() as conn:
        stored = await event_store.read_stream(conn, stream)
    assert stored == winner
    assert stored[0].payload == {"writer": 1}

    # The loser's transaction was rolled back whole: its position was not consumed.
    async with db.write() as conn:
        head = StreamHead(1, stored[0].hash, stored[0].timestamp)
        nxt = await event_store.insert_sealed(
            conn, event_store.seal(stream, stream, head, [NewEvent("race")], NOW)
        )
    assert nxt[0].position == stored[0].position + 1


async def test_racing_appends_to_one_stream_without_ordering_have_one_winner(db: Database) -> None:
    for round_ in range(5):
        stream = _job_id(100 + round_)
        results = await asyncio.gather(
            *(_append_first(db, stream, {"writer": w}, hold=0.01 * w) for w in range(4)),
            return_exceptions=True,
        )
        winners = [r for r in results if isinstance(r, list)]
        losers = [r for r in results if isinstance(r, BaseException)]
        assert len(winners) == 1 and len(losers) == 3
        assert all(isinstance(r, ConcurrencyConflict) for r in losers), losers
        async with db.read() as conn:
            assert await event_store.read_stream(conn, stream) == winners[0]
