"""The jobs a node owns: its runner table, the jobs it is starting, and its free slots.

One `OwnedJobs` per node, shared by its parts, each with its own right to it:
- the scheduler marks the jobs whose lease it takes as starting (so that the heartbeat renews
  their leases before they have a runner), forgets the runners that finished, and asks how many
  slots are free before it admits, claims or recovers;
- the job starter adopts the runner it built (or frees the slot of a job that ended in the
  commit that started it) and ends the starting mark;
- the heartbeat renews the leases of `owned_ids()` and stops runners whose lease is gone.
Nothing else adds or removes a runner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from app.ops import metrics
from app.runtime.runner import JobRunner


class OwnedJobs:
    """A runner per job this node runs, the jobs between taking their lease and having a runner."""

    def __init__(self, max_active: int, on_slot_freed: Callable[[], None]) -> None:
        self.max_active = max_active
        self.runners: dict[str, JobRunner] = {}
        self._starting: set[str] = set()
        self._on_slot_freed = on_slot_freed
        self._done_waiters: set[asyncio.Future[Any]] = set()

    def free_slots(self) -> int:
        """How many more jobs this node may run (jobs being started are not counted)."""
        return self.max_active - len(self.runners)

    def owned_ids(self) -> list[str]:
        """The jobs whose leases the heartbeat keeps alive: running and being started."""
        return [*self.runners, *self._starting]

    def is_starting(self, job_id: str) -> bool:
        """True between taking the job's lease and having its runner (or giving up)."""
        return job_id in self._starting

    def mark_starting(self, job_id: str) -> None:
        """This node took the job's lease and is about to start or recover it."""
        self._starting.add(job_id)

    def end_starting(self, job_ids: Iterable[str]) -> None:
        """The jobs have a runner now, or their start was given up."""
        self._starting.difference_update(job_ids)

    def adopt(self, runner: JobRunner) -> None:
        """Run a job just started or recovered; a job that already ended frees its slot at once."""
        if runner.job.terminal:  # it ended in the commit that started (or recovered) it: the slot is free
            self._on_slot_freed()
            return
        self.runners[runner.job_id] = runner
        metrics.runners_active(len(self.runners))
        runner.start()
        # A finished job frees a slot: schedule at once rather than at the next poll.
        waiter = asyncio.ensure_future(runner.done.wait())
        self._done_waiters.add(waiter)
        waiter.add_done_callback(self._runner_done)

    def _runner_done(self, waiter: asyncio.Future[Any]) -> None:
        self._done_waiters.discard(waiter)
        self._on_slot_freed()

    def forget_finished(self) -> None:
        """Drop the runners whose job has stopped."""
        for job_id in [j for j, r in self.runners.items() if r.done.is_set()]:
            del self.runners[job_id]
        metrics.runners_active(len(self.runners))

    def stop_all(self, *, lease_lost: bool) -> None:
        """Stop every runner (without writing, if `lease_lost`)."""
        for runner in list(self.runners.values()):
            runner.stop(lease_lost=lease_lost)

    async def stop_gracefully(self, timeout: float) -> int:
        """Stop every runner for a shutdown and wait up to `timeout` seconds; returns how many there were."""
        runners = list(self.runners.values())
        for runner in runners:
            runner.stop(graceful=True)
        if runners:
            await asyncio.wait([asyncio.create_task(r.done.wait()) for r in runners], timeout=timeout)
        return len(runners)
