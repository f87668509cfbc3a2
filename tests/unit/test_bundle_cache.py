"""The node's cache of uploaded bundles (app/bundles/cache.py, uploads.py): bounded, and nothing left behind."""

from __future__ import annotations

import asyncio
import io
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from app.bundles import cache, uploads
from tests.bundle_zips import HeldStep, emptied, router_manifest, zip_entries

HOUR = 3600.0


def version(temp_dir: Path, name: str, size: int, age: float) -> str:
    """A cached version `name` (padded to a fingerprint) of `size` payload bytes, last used `age` s ago."""
    fingerprint = name.ljust(64, "0")
    path = cache.cached_version(temp_dir, fingerprint)
    (path / "payloads").mkdir(parents=True)
    (path / "manifest.json").write_bytes(b"{}")
    (path / "payloads" / "blob").write_bytes(bytes(size - 2))
    when = time.time() - age
    os.utime(path, (when, when))
    return fingerprint


def present(temp_dir: Path) -> list[str]:
    return sorted(p.name for p in cache.cache_root(temp_dir).iterdir())


def test_evicts_least_recently_used_versions_past_the_cap(tmp_path: Path) -> None:
    oldest, old, new = (
        version(tmp_path, n, 1000, age) for n, age in (("a", 3 * HOUR), ("b", 2 * HOUR), ("c", HOUR))
    )
    assert cache.evict(tmp_path, keep=set(), max_bytes=3000) == []
    assert cache.evict(tmp_path, keep=set(), max_bytes=2500) == [oldest]
    assert cache.evict(tmp_path, keep=set(), max_bytes=1000) == [old]
    assert present(tmp_path) == [new]


def test_never_evicts_a_needed_or_recently_used_version(tmp_path: Path) -> None:
    needed = version(tmp_path, "a", 1000, 3 * HOUR)
    recent = version(tmp_path, "b", 1000, 60)
    unused = version(tmp_path, "c", 1000, 2 * HOUR)
    assert cache.evict(tmp_path, keep={needed}, max_bytes=0) == [unused]
    assert present(tmp_path) == [needed, recent]  # over the cap, but each is needed or in use


def test_finding_a_version_marks_it_used(tmp_path: Path) -> None:
    fingerprint = version(tmp_path, "a", 100, 3 * HOUR)
    assert cache.is_cached(tmp_path, fingerprint)
    assert cache.evict(tmp_path, keep=set(), max_bytes=0) == []
    assert cache.evict(tmp_path, keep=set(), max_bytes=0, spare_seconds=0) == [fingerprint]
    assert not cache.is_cached(tmp_path, fingerprint)
    assert present(tmp_path) == []  # the renamed copy is deleted too


def test_sweeps_leftovers_of_interrupted_work_once_they_are_old(tmp_path: Path) -> None:
    root = cache.cache_root(tmp_path)
    kept = version(tmp_path, "a", 100, 3 * HOUR)
    for name, age in (
        (".upload-old", 2 * HOUR),
        (".partial-old", 2 * HOUR),
        (".evict-old", 2 * HOUR),
        (".upload-new", 60),
    ):
        (root / name / "payloads").mkdir(parents=True)
        when = time.time() - age
        os.utime(root / name, (when, when))
    assert sorted(cache.sweep_leftovers(tmp_path)) == [".evict-old", ".partial-old", ".upload-old"]
    assert present(tmp_path) == [".upload-new", kept]
    assert cache.sweep_leftovers(tmp_path / "nowhere") == []


BUNDLE = zip_entries([("manifest.json", router_manifest("tiny")), ("payloads/a.txt", b"a" * 10_000)])


@pytest.mark.parametrize("stage", ["extract_upload", "build_archive"])
async def test_a_cancelled_upload_leaves_no_extraction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    """The awaiting task is cancelled while its thread works; the thread's directory goes when it is done."""
    held, finished = HeldStep(monkeypatch, stage), threading.Event()

    def judge(*args: Any, **kwargs: Any) -> Any:
        try:
            return uploads.read_upload(*args, **kwargs)
        finally:
            finished.set()

    work_dir = tmp_path / "work"
    work_dir.mkdir()
    task = asyncio.create_task(uploads.in_thread(judge, io.BytesIO(BUNDLE), work_dir, max_bytes=1_000_000))
    await held.reached()
    if stage == "build_archive":
        assert [p.name[:8] for p in work_dir.iterdir()] == [".upload-"]  # extracted, being archived
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    held.release()
    assert await asyncio.to_thread(finished.wait, 10)
    assert await emptied(work_dir) == []
