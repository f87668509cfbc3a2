"""The parts of a node, each without the others (app/runtime/node.py): scheduler, membership, bundle scanner."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from app.domain.canonical import sha256_hex
from app.domain.job import AdmitJob, CancelJob
from app.domain.manifest import normalize_manifest
from app.runtime.bundle_scanner import BundleScanner
from app.runtime.jobs import OwnedJobs
from app.runtime.membership import Membership
from app.runtime.scheduler import Scheduler
from app.runtime.starter import JobStarter
from app.service import Service
from app.store import read_model
from app.store.database import Database
from tests.runtime.conftest import node_settings


class RecordingStarter:
    """Stands in for JobStarter: records what the scheduler hands it and starts nothing."""

    def __init__(self) -> None:
        self.bootstrapped: list[tuple[str, int]] = []

    async def bootstrap(self, job_id: str, fence: Any, stream: Any) -> None:
        self.bootstrapped.append((job_id, fence.token))

    async def recover(self, job_id: str, taken: Any) -> None:
        raise AssertionError(f"nothing to recover, yet {job_id} was taken over")


def _scheduler(
    db: Database, service: Service, tmp_path: Path, max_active_jobs: int
) -> tuple[Scheduler, OwnedJobs, RecordingStarter]:
    settings = node_settings(str(db.url), tmp_path, max_active_jobs=max_active_jobs)
    jobs = OwnedJobs(settings.max_active_jobs, on_slot_freed=lambda: None)
    starter = RecordingStarter()
    scheduler = Scheduler(settings, db, service, jobs, cast(JobStarter, starter), incarnation="inc-1")
    return scheduler, jobs, starter


async def _submit(service: Service, count: int) -> list[str]:
    manifest = normalize_manifest({
        "manifest_version": "1.0",
        "graph_id": "parts_v1",
        "nodes": [{"node_id": "root", "agent_type": "router", "role": "root"}],
    })
    digest = sha256_hex("parts")
    return [
        (await service.submit(manifest=manifest, bundle=None, idempotency_key=None, request_sha256=digest)).job_id
        for _ in range(count)
    ]


async def test_a_tick_admits_and_claims_up_to_the_free_slots(db: Database, service: Service, tmp_path: Path) -> None:
    scheduler, jobs, starter = _scheduler(db, service, tmp_path, max_active_jobs=2)
    submitted = await _submit(service, 3)
    await scheduler.tick()
    assert starter.bootstrapped == [(submitted[0], 1), (submitted[1], 1)]
    # Claimed but not started (the stand-in never ends the mark): the heartbeat keeps their leases.
    assert sorted(jobs.owned_ids()) == sorted(submitted[:2])
    assert jobs.free_slots() == 2  # a slot is taken by a runner, not by a job being started


async def test_a_job_queued_by_this_process_is_claimed_at_the_next_wake_up(
    db: Database, service: Service, tmp_path: Path
) -> None:
    scheduler, _, starter = _scheduler(db, service, tmp_path, max_active_jobs=5)
    (job_id,) = await _submit(service, 1)
    await service.execute(job_id, AdmitJob("elsewhere"))
    await scheduler.react()
    assert starter.bootstrapped == []  # not told: the wake-up waits for the poll
    service.subscribe(scheduler.on_commit)
    (other,) = await _submit(service, 1)
    await service.execute(other, AdmitJob("elsewhere"))  # job_queued: a claim is due
    await scheduler.react()
    assert [j for j, _ in starter.bootstrapped] == [job_id, other]


async def test_a_cancel_of_a_job_this_node_does_not_run_does_not_wake_it(
    db: Database, service: Service, tmp_path: Path
) -> None:
    scheduler, _, _ = _scheduler(db, service, tmp_path, max_active_jobs=5)
    (job_id,) = await _submit(service, 1)
    await service.execute(job_id, AdmitJob("elsewhere"))
    service.subscribe(scheduler.on_commit)
    await service.execute(job_id, CancelJob())
    assert not scheduler._wake.is_set()


def _membership(db: Database, service: Service, tmp_path: Path, incarnation: str) -> Membership:
    settings = node_settings(str(db.url), tmp_path, node_name="member")
    jobs = OwnedJobs(settings.max_active_jobs, on_slot_freed=lambda: None)
    return Membership(settings, db, service, jobs, incarnation=incarnation, capacities={})


async def test_a_node_whose_name_another_incarnation_took_fences_itself_out(
    db: Database, service: Service, tmp_path: Path
) -> None:
    first = _membership(db, service, tmp_path, "inc-1")
    await first.register()
    await first.beat()
    assert not first.fenced_out.is_set()
    second = _membership(db, service, tmp_path, "inc-2")
    await second.register()
    await first.beat()
    assert first.fenced_out.is_set()
    await second.beat()
    assert not second.fenced_out.is_set()


async def test_the_interval_scan_registers_new_bundle_directories(
    db: Database, service: Service, tmp_path: Path
) -> None:
    scanner = BundleScanner(node_settings(str(db.url), tmp_path), db, service)
    async with db.read() as conn:
        assert await read_model.registered_bundle_views(conn) == []
    await scanner.reload_due()
    async with db.read() as conn:
        registered = {v["bundle_id"] for v in await read_model.registered_bundle_views(conn)}
    assert "shell_python_chain_v1" in registered
