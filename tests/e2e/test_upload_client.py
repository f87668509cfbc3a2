"""Bundles over HTTP from the client and the CLI (SPEC C.2.1, C.2.8): `upload_bundle` of a directory
(zipped by the client) and of a zip, `bundles upload`, and `submit <dir>` uploading a bundle the
server has not registered — real processes, both databases."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.client import Client, bundle_archive
from tests.e2e.conftest import NodeSpec
from tests.runtime.processes import ROOT, NodeProcess


@pytest.fixture(scope="module")
def node_spec() -> NodeSpec:
    """A node with no bundles directory: every bundle it runs comes over HTTP."""
    return NodeSpec("upload-node")


def _bundle(tmp_path: Path, graph_id: str) -> Path:
    """A copy of the §13.3 chain under a graph_id the server has never seen."""
    target = tmp_path / graph_id
    shutil.copytree(ROOT / "examples" / "shell_python_chain", target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["graph_id"] = graph_id
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def test_the_client_uploads_a_directory_and_a_zip(server: NodeProcess, tmp_path: Path) -> None:
    directory = _bundle(tmp_path, "uploaded_chain")
    with Client(server.url) as mn:
        first = mn.upload_bundle(directory)
        assert first.changed and first.bundle_id == "uploaded_chain"
        assert first.bundle_path == f"upload:uploaded_chain@{first.fingerprint}"
        archive = tmp_path / "chain.zip"
        archive.write_bytes(bundle_archive(directory))
        again = mn.upload_bundle(archive)
        assert (again.changed, again.fingerprint) == (False, first.fingerprint)
        job = mn.submit(bundle_path=first.bundle_path)
        done = mn.wait(job.job_id, timeout=120)
        assert done.job.status == "completed", done.job.result
        assert done.job.bundle is not None and done.job.bundle.fingerprint == first.fingerprint
        assert "uploaded_chain" in [b.bundle_id for b in mn.bundles()]


def test_the_cli_uploads_and_submit_uploads_an_unregistered_directory(server: NodeProcess, tmp_path: Path) -> None:
    def mn(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app", *args, "--url", server.url], cwd=ROOT, capture_output=True, text=True,
            timeout=180,
        )

    uploaded = mn("bundles", "upload", str(_bundle(tmp_path, "cli_uploaded")), "-o", "json")
    assert uploaded.returncode == 0, uploaded.stderr
    assert json.loads(uploaded.stdout)["bundle_path"].startswith("upload:cli_uploaded@")
    fresh = _bundle(tmp_path, "never_registered_chain")
    first = mn("submit", str(fresh), "--wait")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "bundle never_registered_chain is not registered on the server; uploading" in first.stderr
    assert "quick-signal: 7 words, 61 chars" in first.stdout
    second = mn("submit", str(fresh))  # registered now: submitted by its id, nothing uploaded
    assert second.returncode == 0 and "uploading" not in second.stderr
    with Client(server.url) as client:
        assert client.job(second.stdout.strip()).job.bundle is not None
