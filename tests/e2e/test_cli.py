"""The README quick start for real: a server process, `mirror-neuron submit --wait`, verify, rebuild."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.runtime.processes import ROOT, NodeProcess


def cli(*args: str, database_url: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if database_url is not None:
        env["MIRROR_NEURON_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_quick_start_submit_wait_verify_rebuild(database_url: str, db: Any, tmp_path: Path) -> None:
    node = NodeProcess("cli-node", database_url, tmp_path, MIRROR_NEURON_BUNDLES_DIR=str(ROOT / "examples")).start()
    try:
        done = cli("submit", "examples/prime_sweep_4_workers", "--wait", "--url", node.url)
        assert done.returncode == 0, done.stdout + done.stderr
        assert '"prime_count": 32' in done.stdout
        assert "completed" in done.stderr
        raw = cli("submit", "examples/manifests/research_flow.json", "--wait", "--url", node.url)
        assert raw.returncode == 0, raw.stderr
        failed = cli("submit", "examples/shell_python_chain_fail_exit", "--wait", "--url", node.url)
        assert failed.returncode == 1
        assert "command exited with status 3" in failed.stdout
        unknown = tmp_path / "not_registered"
        unknown.mkdir()
        (unknown / "manifest.json").write_text('{"graph_id": "nobody_registered_this"}')
        missing = cli("submit", str(unknown), "--url", node.url)
        assert missing.returncode == 1 and "is not registered on the server" in missing.stderr
        listed = cli("jobs", "--url", node.url)
        assert listed.returncode == 0 and listed.stdout.count("completed") >= 2
        job_id = done.stdout.splitlines()[0].strip()
        events = cli("events", job_id, "--url", node.url)
        assert events.returncode == 0 and len(events.stdout.splitlines()) == 59
        # `mirror-neuron events <id> | head -1`: the reader is gone before the first line.
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            piped = subprocess.run(
                [sys.executable, "-m", "app", "events", job_id, "--url", node.url],
                cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60,
            )
        finally:
            os.close(write_end)
        assert piped.returncode == 1 and piped.stderr == "", piped.stderr
    finally:
        assert node.stop() == 0, node.log()
    verified = cli("verify", database_url=database_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    rebuilt = cli("rebuild", database_url=database_url)
    assert rebuilt.returncode == 0 and "rebuilt projections from" in rebuilt.stdout
    again = cli("verify", database_url=database_url)
    assert again.returncode == 0, again.stdout


def test_configuration_errors_refuse_to_start(tmp_path: Path) -> None:
    env_cases = [
        ({"MIRROR_NEURON_API_PORT": "forty"}, "MIRROR_NEURON_API_PORT"),
        ({"MIRROR_NEURON_API_HOST": "0.0.0.0"}, "refusing to listen on 0.0.0.0 without MIRROR_NEURON_API_TOKEN"),
        ({"MIRROR_NEURON_HEARTBEAT_SECONDS": "3", "MIRROR_NEURON_LEASE_TTL_SECONDS": "5"},
         "MIRROR_NEURON_LEASE_TTL_SECONDS must be at least twice MIRROR_NEURON_HEARTBEAT_SECONDS"),
        ({"MIRROR_NEURON_API_ENABLED": "0", "MIRROR_NEURON_RUNTIME_ENABLED": "off"}, "both the API and the runtime are disabled"),
        ({"MIRROR_NEURON_AUTO_MIGRATE": "maybe"}, "MIRROR_NEURON_AUTO_MIGRATE"),
    ]
    for env, message in env_cases:
        full = {**os.environ, "MIRROR_NEURON_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", **env}
        done = subprocess.run([sys.executable, "-m", "app", "serve"], cwd=ROOT, env=full, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0
        assert message in done.stderr, (env, done.stderr)


def test_port_in_use_exits_non_zero_naming_the_address(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        env = {**os.environ, "MIRROR_NEURON_API_PORT": str(port),
               "MIRROR_NEURON_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"}
        done = subprocess.run([sys.executable, "-m", "app", "serve"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"127.0.0.1:{port}" in done.stderr
