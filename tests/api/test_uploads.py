"""Bundle uploads over HTTP (SPEC C.2, C.5.1–C.5.5): bad input refused with nothing written, versions stored."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import stat
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError

from app.bundles import cache
from app.bundles.archive import extract_stored
from app.bundles.cache import cache_root
from app.bundles.fingerprint import fingerprint
from app.bundles.upkeep import CacheUpkeep
from app.config import Settings
from app.domain.manifest import normalize_manifest
from app.runtime.bundle_cache import BundleCache
from app.service import Service
from app.store import archives, event_store
from app.store.database import Database
from app.store.tables import bundle_archives
from tests.api.conftest import (
    BASE,
    ClientFactory,
    event_count,
    register_bundle,
    submitted_manifest,
    write_bundle,
)
from tests.bundle_zips import (
    HeldStep,
    emptied,
    executable_entry,
    router_manifest,
    special_entry,
    zip_directory,
    zip_entries,
)

ROOT = Path(__file__).resolve().parents[2]
CHAIN = ROOT / "examples" / "shell_python_chain"
MISSING = "missing 'bundle' file upload"
NOT_A_ZIP = "bundle is not a zip archive"
NO_MANIFEST = "bundle must hold manifest.json at its root or in its one top-level directory"


@pytest.fixture
def temp_dir(tmp_path: Path) -> Path:
    return tmp_path / "node-temp"


@pytest.fixture
async def client(make_client: ClientFactory, temp_dir: Path) -> httpx.AsyncClient:
    """The API with its own temp dir, so the test sees every file an upload leaves behind."""
    return await make_client(Settings(temp_dir=temp_dir, bundle_upload_max_bytes=1_000_000))


async def upload(client: httpx.AsyncClient, data: bytes, field: str = "bundle") -> httpx.Response:
    return await client.post(f"{BASE}/bundles/upload", files={field: ("bundle.zip", data, "application/zip")})


async def archive_count(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(bundle_archives))).scalar_one())


async def bundle_events(db: Database, bundle_id: str) -> list[Any]:
    async with db.read() as conn:
        return await event_store.read_stream(conn, f"bundle:{bundle_id}")


def cached(temp_dir: Path) -> list[str]:
    """Everything under the node's temp dir (the cache included)."""
    return sorted(p.relative_to(temp_dir).as_posix() for p in temp_dir.rglob("*")) if temp_dir.exists() else []


def chain_zip(tmp_path: Path, top: str | None = "shell_python_chain", **changes: str) -> bytes:
    """The shell → python chain example zipped, with payload files replaced by `changes`."""
    copy = tmp_path / f"chain-{len(list(tmp_path.iterdir()))}"
    shutil.copytree(CHAIN, copy)
    for relative, text in changes.items():
        (copy / "payloads" / relative).write_text(text)
    return zip_directory(copy, top)


MANIFEST_OK = router_manifest("tiny")
GOOD_ENTRIES: list[tuple[str | zipfile.ZipInfo, bytes]] = [("manifest.json", MANIFEST_OK), ("payloads/", b"")]
BAD_ARCHIVES: list[tuple[str, bytes, str]] = [
    ("not a zip", b"PK\x03\x04 certainly not a zip", NOT_A_ZIP),
    ("truncated", zip_entries([*GOOD_ENTRIES, ("payloads/a.txt", b"x" * 5000)])[:-40], NOT_A_ZIP),
    ("zip slip", zip_entries([*GOOD_ENTRIES, ("payloads/../../x", b"x")]), 'bundle entry "payloads/../../x" has a ".." component'),
    ("dotdot first", zip_entries([("../../x", b"x"), *GOOD_ENTRIES]), 'bundle entry "../../x" has a ".." component'),
    ("absolute", zip_entries([*GOOD_ENTRIES, ("/etc/cron.d/x", b"x")]), 'bundle entry "/etc/cron.d/x" is an absolute path'),
    ("backslash climb", zip_entries([*GOOD_ENTRIES, ("payloads\\..\\..\\x", b"x")]), 'bundle entry "payloads\\..\\..\\x" has a ".." component'),
    (
        "symlink",
        zip_entries([*GOOD_ENTRIES, (special_entry("payloads/link", stat.S_IFLNK), b"/etc/passwd")]),
        'bundle entry "payloads/link" is a symbolic link',
    ),
    (
        "device",
        zip_entries([*GOOD_ENTRIES, (special_entry("payloads/dev", stat.S_IFCHR), b"")]),
        'bundle entry "payloads/dev" is not a regular file or directory',
    ),
    (
        "fifo",
        zip_entries([*GOOD_ENTRIES, (special_entry("payloads/pipe", stat.S_IFIFO), b"")]),
        'bundle entry "payloads/pipe" is not a regular file or directory',
    ),
    (
        "10,001 entries",
        zip_entries([*GOOD_ENTRIES, *((f"payloads/{i}.txt", b"") for i in range(9_999))]),
        "bundle has more than 10000 entries",
    ),
    (
        "inflates past the cap",
        zip_entries([*GOOD_ENTRIES, ("payloads/zeros.bin", bytes(5_000_000))]),
        "bundle expands to more than 1000000 bytes",
    ),
    ("no manifest", zip_entries([("payloads/a.txt", b"x")]), NO_MANIFEST),
    ("empty zip", zip_entries([]), NO_MANIFEST),
    (
        "two top-level directories",
        zip_entries([("a/manifest.json", MANIFEST_OK), ("a/payloads/", b""), ("b/readme.txt", b"x")]),
        NO_MANIFEST,
    ),
    ("manifest too deep", zip_entries([("a/b/manifest.json", MANIFEST_OK), ("a/b/payloads/", b"")]), NO_MANIFEST),
    (
        "file over a directory",
        zip_entries([("manifest.json", MANIFEST_OK), ("payloads/x", b"1"), ("payloads/x/y", b"2")]),
        'bundle entry "payloads/x/y" conflicts with another entry',
    ),
]


@pytest.mark.parametrize(("label", "data", "error"), BAD_ARCHIVES, ids=[case[0] for case in BAD_ARCHIVES])
async def test_a_refused_archive_writes_and_extracts_nothing(
    client: httpx.AsyncClient, db: Database, temp_dir: Path, label: str, data: bytes, error: str
) -> None:
    before = await event_count(db)
    response = await upload(client, data)
    assert response.status_code == 400, label
    assert response.json() == {"error": error}
    assert await event_count(db) == before and await archive_count(db) == 0
    assert cached(temp_dir) in ([], ["mirror_neuron_bundles"])


async def test_a_missing_field_is_refused(client: httpx.AsyncClient, db: Database) -> None:
    good = zip_entries(GOOD_ENTRIES)
    for response in (
        await upload(client, good, field="file"),
        await client.post(f"{BASE}/bundles/upload", data={"bundle": "not a file"}),
        await client.post(f"{BASE}/bundles/upload", json={"bundle": "x"}),
        await client.post(f"{BASE}/bundles/upload"),
    ):
        assert (response.status_code, response.json()) == (400, {"error": MISSING})
    assert await event_count(db) == 0 and await archive_count(db) == 0


async def test_the_compressed_body_is_capped(make_client: ClientFactory, db: Database) -> None:
    client = await make_client(Settings(max_body_bytes=2048))
    data = zip_entries([*GOOD_ENTRIES, ("payloads/noise.bin", os.urandom(4000))])
    response = await upload(client, data)
    assert (response.status_code, response.json()) == (413, {"error": "request body exceeds the limit of 2048 bytes"})
    assert await event_count(db) == 0 and await archive_count(db) == 0


async def test_an_archive_that_understates_its_size_stops_at_what_it_declares(
    client: httpx.AsyncClient, db: Database, temp_dir: Path
) -> None:
    # A zip bomb that lies: its headers declare 100 bytes for a file that inflates to 5 MB.
    name = b"payloads/bomb.bin"
    data = bytearray(zip_entries([*GOOD_ENTRIES, (name.decode(), bytes(5_000_000))]))
    local = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo(name.decode()).header_offset
    data[local + 22 : local + 26] = (100).to_bytes(4, "little")  # local header: uncompressed size
    for offset in _central_headers(bytes(data)):
        if bytes(data[offset + 46 : offset + 46 + len(name)]) == name:
            data[offset + 24 : offset + 28] = (100).to_bytes(4, "little")  # central directory: the same
    response = await upload(client, bytes(data))
    assert (response.status_code, response.json()) == (400, {"error": NOT_A_ZIP})
    assert await archive_count(db) == 0 and cached(temp_dir) in ([], ["mirror_neuron_bundles"])


def _central_headers(data: bytes) -> list[int]:
    found: list[int] = []
    start = 0
    while (offset := data.find(b"PK\x01\x02", start)) >= 0:
        found.append(offset)
        start = offset + 4
    return found


async def test_an_invalid_manifest_names_entry_paths_never_server_paths(
    client: httpx.AsyncClient, db: Database, temp_dir: Path
) -> None:
    manifest = {
        "graph_id": "bad",
        "manifest_version": "1.0",
        "nodes": [
            {"node_id": "root", "agent_type": "executor", "role": "root", "config": {"upload_path": "missing.sh"}},
            {"node_id": "x", "agent_type": "warp"},
        ],
    }
    response = await upload(client, zip_entries([("b/manifest.json", json.dumps(manifest).encode()), ("b/payloads/", b"")]))
    assert response.status_code == 400
    assert response.json() == {
        "error": "Manifest validation failed",
        "errors": ["unsupported agent_type \"warp\" for node x", "upload source does not exist: b/payloads/missing.sh"],
    }
    no_payloads = await upload(client, zip_entries([("manifest.json", MANIFEST_OK), ("notes.txt", b"x")]))
    assert no_payloads.json() == {"error": "Manifest validation failed", "errors": ["job folder is missing payloads/: payloads"]}
    not_json = await upload(client, zip_entries([("manifest.json", b"{nope"), ("payloads/", b"")]))
    assert not_json.json()["errors"][0].startswith("manifest.json is not valid JSON: ")
    for refused in (response, no_payloads, not_json):
        assert str(temp_dir) not in refused.text
    assert await event_count(db) == 0 and await archive_count(db) == 0
    assert cached(temp_dir) == ["mirror_neuron_bundles"]


async def test_upload_registers_and_stores_the_version(
    client: httpx.AsyncClient, db: Database, temp_dir: Path, tmp_path: Path
) -> None:
    response = await upload(client, chain_zip(tmp_path))
    assert response.status_code == 200, response.text
    body = response.json()
    scanned, payload_files = fingerprint(CHAIN)
    assert body["fingerprint"] == scanned  # the same content as the directory: the same version
    assert body["bundle_id"] == "shell_python_chain_v1" and body["changed"] is True
    assert body["bundle_path"] == f"upload:shell_python_chain_v1@{scanned}"
    assert body["manifest"] == normalize_manifest(json.loads((CHAIN / "manifest.json").read_text()))
    (registered,) = await bundle_events(db, "shell_python_chain_v1")
    assert registered.type == "bundle_registered"
    assert registered.payload["reason"] == "upload" and registered.payload["path"] == body["bundle_path"]
    assert registered.payload["payload_files"] == payload_files
    detail = (await client.get(f"{BASE}/bundles/shell_python_chain_v1")).json()
    assert detail["path"] == body["bundle_path"] and detail["history"][0]["reason"] == "upload"
    # This node keeps the version it extracted as its cached copy.
    assert fingerprint(cache_root(temp_dir) / scanned) == (scanned, payload_files)


async def test_the_stored_archive_is_what_its_fingerprint_says(
    client: httpx.AsyncClient, db: Database, tmp_path: Path
) -> None:
    # Extra files that §9.3 does not fingerprint are not stored; an executable keeps its execute bit.
    data = zip_entries(
        [
            ("b/manifest.json", MANIFEST_OK),
            (executable_entry("b/payloads/run.sh"), b"#!/bin/sh\necho hi\n"),
            ("b/payloads/data/x.txt", b"x"),
            ("b/payloads/.hidden", b"secret"),
            ("b/README.md", b"not part of the bundle"),
            ("__MACOSX/b/._manifest.json", b"resource fork"),
        ]
    )
    body = (await upload(client, data)).json()
    async with db.read() as conn:
        stored = await archives.archive(conn, body["fingerprint"])
    assert stored is not None
    target = tmp_path / "extracted"
    extract_stored(stored.archive, target, stored.expanded_bytes)
    assert fingerprint(target) == (body["fingerprint"], ["data/x.txt", "run.sh"])
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()) == [
        "manifest.json", "payloads/data/x.txt", "payloads/run.sh",
    ]
    assert stat.S_IMODE((target / "payloads/run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "payloads/data/x.txt").stat().st_mode) == 0o644


async def test_archives_are_never_rewritten(client: httpx.AsyncClient, db: Database) -> None:
    body = (await upload(client, zip_entries(GOOD_ENTRIES))).json()
    with pytest.raises(DBAPIError):
        async with db.write() as conn:
            await conn.execute(update(bundle_archives).values(archive=b"other"))
    async with db.read() as conn:
        stored = await archives.version(conn, body["fingerprint"])
    assert stored is not None and stored.bundle_id == "tiny"


async def test_identical_reupload_appends_nothing(client: httpx.AsyncClient, db: Database, tmp_path: Path) -> None:
    first = (await upload(client, chain_zip(tmp_path))).json()
    before = await event_count(db)
    again = await upload(client, chain_zip(tmp_path, top=None))  # same files, zipped differently
    assert again.status_code == 200
    assert again.json() == {**first, "changed": False}
    assert await event_count(db) == before and await archive_count(db) == 1


async def test_changed_content_appends_bundle_reloaded_and_new_jobs_use_it(
    client: httpx.AsyncClient, db: Database, tmp_path: Path
) -> None:
    first = (await upload(client, chain_zip(tmp_path))).json()
    old_job = await submit_path(client, first["bundle_path"])
    second = (await upload(client, chain_zip(tmp_path, **{"report/scripts/build_report.py": "print('{}')\n"}))).json()
    assert second["changed"] is True and second["fingerprint"] != first["fingerprint"]
    events = await bundle_events(db, "shell_python_chain_v1")
    assert [e.type for e in events] == ["bundle_registered", "bundle_reloaded"]
    assert events[1].payload["reason"] == "upload"
    assert events[1].payload["previous_fingerprint"] == first["fingerprint"]
    assert events[1].payload["current_fingerprint"] == second["fingerprint"]
    assert events[1].payload["path"] == second["bundle_path"]
    by_id = await submit_json(client, {"bundle_id": "shell_python_chain_v1"})
    by_old_path = await submit_path(client, first["bundle_path"])
    assert await job_bundle(client, by_id) == second["fingerprint"]
    assert await job_bundle(client, by_old_path) == first["fingerprint"]  # an issued path stays that version
    assert await job_bundle(client, old_job) == first["fingerprint"]
    assert await archive_count(db) == 2
    # Uploading the first content again makes it current again, as a reload.
    back = (await upload(client, chain_zip(tmp_path))).json()
    assert back["changed"] is True and await archive_count(db) == 2


async def submit_json(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
    response = await client.post(f"{BASE}/jobs", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["job_id"])


async def submit_path(client: httpx.AsyncClient, path: str, **extra: Any) -> str:
    return await submit_json(client, {"_bundle_path": path, **extra})


async def job_bundle(client: httpx.AsyncClient, job_id: str) -> str:
    job = (await client.get(f"{BASE}/jobs/{job_id}")).json()["job"]
    fingerprint = job["bundle"]["fingerprint"]
    path = f"upload:{job['bundle']['bundle_id']}@{fingerprint}"
    assert job["manifest_ref"]["job_path"] == path
    assert job["manifest_ref"]["manifest_path"] == path + "/manifest.json"
    return str(fingerprint)


async def test_bundle_path_submits_that_version(client: httpx.AsyncClient, db: Database, tmp_path: Path) -> None:
    body = (await upload(client, chain_zip(tmp_path))).json()
    inputs = {"shell_worker": [{"request_id": "r", "label": "l", "text": "one two"}]}
    job_id = await submit_path(client, body["bundle_path"], initial_inputs=inputs)
    manifest = await submitted_manifest(db, job_id)
    assert manifest["initial_inputs"] == inputs and manifest["graph_id"] == "shell_python_chain_v1"
    job = (await client.get(f"{BASE}/jobs/{job_id}")).json()["job"]
    assert job["bundle"] == {"bundle_id": "shell_python_chain_v1", "fingerprint": body["fingerprint"]}
    assert job["manifest_ref"]["job_path"] == body["bundle_path"]
    extra = await client.post(f"{BASE}/jobs", json={"_bundle_path": body["bundle_path"], "job_name": "x"})
    assert (extra.status_code, extra.json()["error"]) == (
        400, 'unexpected field "job_name" in a bundle submission; only bundle_id and initial_inputs are allowed',
    )


async def test_bundle_paths_not_issued_are_refused(client: httpx.AsyncClient, db: Database, tmp_path: Path) -> None:
    body = (await upload(client, chain_zip(tmp_path))).json()
    other = (await upload(client, zip_entries(GOOD_ENTRIES))).json()
    before = await event_count(db)
    never = "upload:shell_python_chain_v1@" + "0" * 64
    for path in (
        never,
        f"upload:tiny@{body['fingerprint']}",  # that version exists, for another bundle id
        f"upload:shell_python_chain_v1@{other['fingerprint']}",
        str(CHAIN),
        body["bundle_path"] + "/manifest.json",
        body["bundle_path"].upper(),
    ):
        response = await client.post(f"{BASE}/jobs", json={"_bundle_path": path}, headers={"Idempotency-Key": "k"})
        assert (response.status_code, response.json()) == (400, {"error": f"_bundle_path {path} was not issued by an upload"})
    response = await client.post(f"{BASE}/jobs", json={"_bundle_path": 7})
    assert response.json() == {"error": "_bundle_path 7 was not issued by an upload"}
    assert await event_count(db) == before


async def test_reload_of_an_uploaded_bundle_changes_nothing(client: httpx.AsyncClient, db: Database) -> None:
    await upload(client, zip_entries(GOOD_ENTRIES))
    before = await event_count(db)
    response = await client.post(f"{BASE}/bundles/tiny/reload")
    assert response.json() == {"bundle_id": "tiny", "changed": False, "reloaded": False, "message": "No bundle changes detected"}
    assert await event_count(db) == before


async def test_upload_of_the_scanned_version_appends_nothing_and_issues_a_path(
    client: httpx.AsyncClient, service: Service, db: Database, tmp_path: Path
) -> None:
    scanned = await register_bundle(service, write_bundle(tmp_path, "t", json.loads(MANIFEST_OK)))
    before = await event_count(db)
    body = (await upload(client, zip_directory(Path(scanned.path)))).json()
    assert body["changed"] is False and body["fingerprint"] == scanned.fingerprint
    assert await event_count(db) == before and await archive_count(db) == 1
    detail = (await client.get(f"{BASE}/bundles/tiny")).json()
    assert detail["path"] == scanned.path  # the directory version stays current
    await submit_path(client, body["bundle_path"])


# ------------------------------------------------------------------ discovery without restart (C.2.5)


async def test_reload_of_an_unregistered_id_registers_its_new_directory(
    make_client: ClientFactory, db: Database, tmp_path: Path
) -> None:
    root = tmp_path / "bundles"
    root.mkdir()
    client = await make_client(Settings(bundles_dir=root, temp_dir=tmp_path / "t"))
    assert (await client.post(f"{BASE}/bundles/later/reload")).json() == {"error": "Bundle later not found"}
    write_bundle(root, "a-dir", json.loads(router_manifest("other")))
    write_bundle(root, "z-dir", json.loads(router_manifest("later")), {"x.txt": "1"})
    response = await client.post(f"{BASE}/bundles/later/reload")
    assert response.status_code == 200
    body = response.json()
    (registered,) = await bundle_events(db, "later")
    assert registered.type == "bundle_registered" and registered.payload["reason"] == "api_request"
    assert registered.payload["path"] == str(root / "z-dir")
    assert body == {
        "bundle_id": "later",
        "changed": True,
        "reloaded": True,
        "previous_fingerprint": None,
        "current_fingerprint": fingerprint(root / "z-dir")[0],
        "reason": "api_request",
        "message": "Bundle reloaded successfully",
        "timestamp": registered.timestamp,
    }
    again = await client.post(f"{BASE}/bundles/later/reload")
    assert again.json()["changed"] is False
    assert (await client.get(f"{BASE}/bundles/other")).status_code == 404  # only the id asked for


async def test_reload_of_an_invalid_new_directory_is_422_and_writes_nothing(
    make_client: ClientFactory, db: Database, tmp_path: Path
) -> None:
    root = tmp_path / "bundles"
    client = await make_client(Settings(bundles_dir=root, temp_dir=tmp_path / "t"))
    write_bundle(root, "broken", {"graph_id": "broken", "manifest_version": "1.0", "nodes": []})
    response = await client.post(f"{BASE}/bundles/broken/reload")
    assert response.status_code == 422
    assert response.json() == {
        "error": "Manifest validation failed",
        "errors": [
            "nodes must not be empty",
            "manifest must define at least one entrypoint or one node with role root/root_coordinator",
        ],
    }
    assert await event_count(db) == 0
    nameless = await client.post(f"{BASE}/bundles/broken-too/reload")
    assert nameless.json() == {"error": "Bundle broken-too not found"}


async def test_a_manifest_with_a_lone_surrogate_is_refused_as_a_request_body_is(
    client: httpx.AsyncClient, db: Database
) -> None:
    # One JSON rule for bodies and manifests (Appendix B.4): the string could not be stored in an event.
    manifest = router_manifest("lone", metadata={"note": "x"}).replace(b'"x"', b'"x\\ud800"')
    response = await upload(client, zip_entries([("manifest.json", manifest), ("payloads/", b"")]))
    assert response.status_code == 400
    assert response.json() == {
        "error": "Manifest validation failed",
        "errors": ["manifest.json is not valid JSON: unpaired UTF-16 surrogates are not supported"],
    }
    assert await event_count(db) == 0 and await archive_count(db) == 0


# ------------------------------------------------------------------ the cache (app/bundles/cache.py, upkeep.py)


def versions(temp_dir: Path) -> set[str]:
    root = cache.cache_root(temp_dir)
    return {p.name for p in root.iterdir() if not p.name.startswith(".")}


def unused_for_an_hour(temp_dir: Path) -> None:
    when = time.time() - 3600
    for name in versions(temp_dir):
        os.utime(cache.cached_version(temp_dir, name), (when, when))


async def three_versions(client: httpx.AsyncClient, tmp_path: Path) -> list[dict[str, Any]]:
    """Three versions of the chain bundle uploaded in turn: the last is current."""
    script = "report/scripts/build_report.py"
    zips = [chain_zip(tmp_path, **{script: "print(1)\n"}), chain_zip(tmp_path, **{script: "print(2)\n"}), chain_zip(tmp_path)]
    return [(await upload(client, data)).json() for data in zips]


async def test_eviction_keeps_current_versions_and_those_of_unfinished_jobs(
    client: httpx.AsyncClient, db: Database, temp_dir: Path, tmp_path: Path
) -> None:
    first, second, third = await three_versions(client, tmp_path)
    job_id = await submit_path(client, first["bundle_path"])  # an unfinished job of the first version
    assert versions(temp_dir) == {first["fingerprint"], second["fingerprint"], third["fingerprint"]}
    upkeep = CacheUpkeep(db, temp_dir, max_bytes=0)
    assert await upkeep.once() == []  # every version was used (uploaded) just now
    unused_for_an_hour(temp_dir)
    assert await upkeep.once() == [second["fingerprint"]]
    assert versions(temp_dir) == {first["fingerprint"], third["fingerprint"]}
    assert (await client.post(f"{BASE}/jobs/{job_id}/cancel")).status_code == 200
    assert await upkeep.once() == [first["fingerprint"]]
    assert versions(temp_dir) == {third["fingerprint"]}  # over a cap of 0 bytes, but current
    # A node that needs an evicted version again materialises it from the database.
    await BundleCache(db, temp_dir, "test-node").ensure({"path": first["bundle_path"]})
    assert versions(temp_dir) == {first["fingerprint"], third["fingerprint"]}
    assert await upkeep.once() == []  # just used


async def test_eviction_stops_at_the_cap(client: httpx.AsyncClient, db: Database, temp_dir: Path, tmp_path: Path) -> None:
    old = (await three_versions(client, tmp_path))[0]
    unused_for_an_hour(temp_dir)
    os.utime(cache.cached_version(temp_dir, old["fingerprint"]), (0, 0))  # the least recently used
    sizes = {name: cache._bytes_under(cache.cached_version(temp_dir, name)) for name in versions(temp_dir)}
    assert await CacheUpkeep(db, temp_dir, max_bytes=sum(sizes.values())).once() == []
    assert await CacheUpkeep(db, temp_dir, max_bytes=sum(sizes.values()) - 1).once() == [old["fingerprint"]]


async def test_a_cancelled_upload_request_leaves_no_extraction(
    client: httpx.AsyncClient, temp_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client goes away while the upload's thread works on the extracted bundle: nothing stays."""
    held = HeldStep(monkeypatch, "build_archive")
    request = asyncio.create_task(upload(client, chain_zip(tmp_path)))
    await held.reached()
    assert [p.name[:8] for p in cache_root(temp_dir).iterdir()] == [".upload-"]
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    held.release()
    assert await emptied(cache_root(temp_dir)) == []
