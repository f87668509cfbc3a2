"""The image for real: built by a container engine, then migrate, an API node and two workers run a job.

Runs only where a container engine answers, has (or can pull) the Python base image and can run a
container; otherwise it is skipped saying which of those failed. The containers share the host's
network to reach the test PostgreSQL at 127.0.0.1, so each gets its node name explicitly (on a
host network every container would see the host's hostname, and each node process has the same
pid in its own container; on compose's own network the container id keeps `<hostname>-<pid>` unique).

Settings (environment): MIRROR_NEURON_TEST_CONTAINER_ENGINE (default: the first of docker, podman
that answers `info`; e.g. "podman --runtime runc"), MIRROR_NEURON_TEST_PYTHON_IMAGE (default
python:3.11-slim-bookworm, the Dockerfile's), MIRROR_NEURON_TEST_CONTAINER_FLAGS (extra flags for
build and run, e.g. "--ulimit nofile=1024:1024 --ulimit nproc=1000:1000").
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from app.store.migrate import head_revision
from tests.conftest import create_pg_database, drop_pg_database
from tests.runtime.processes import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = os.environ.get("MIRROR_NEURON_TEST_PYTHON_IMAGE", "python:3.11-slim-bookworm")
FLAGS = shlex.split(os.environ.get("MIRROR_NEURON_TEST_CONTAINER_FLAGS", ""))


def _last_words(done: subprocess.CompletedProcess[str]) -> str:
    for text in (done.stderr, done.stdout):  # what went wrong is the last thing said, on stderr if anything
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return f"exit status {done.returncode}"


def _call(engine: list[str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*engine, *args], capture_output=True, text=True, timeout=timeout)


def _engine() -> list[str]:
    """A container engine that builds and runs here, with the base image present; else skip saying why."""
    configured = os.environ.get("MIRROR_NEURON_TEST_CONTAINER_ENGINE")
    candidates = [shlex.split(configured)] if configured else [["docker"], ["podman"]]
    reasons = []
    for engine in candidates:
        if shutil.which(engine[0]) is None:
            reasons.append(f"{engine[0]}: not installed")
            continue
        info = _call(engine, "info", timeout=60)
        if info.returncode != 0:
            reasons.append(f"{engine[0]} info: {_last_words(info)}")
            continue
        if _call(engine, "image", "inspect", BASE_IMAGE).returncode != 0:
            pulled = _call(engine, "pull", BASE_IMAGE, timeout=600)
            if pulled.returncode != 0:
                reasons.append(f"{engine[0]}: base image {BASE_IMAGE} is not present and cannot be pulled: {_last_words(pulled)}")
                continue
        probe = _call(engine, "run", "--rm", *FLAGS, BASE_IMAGE, "python3", "-c", "print('ok')")
        if probe.returncode != 0 or probe.stdout.strip() != "ok":
            reasons.append(f"{engine[0]} cannot run a container here: {_last_words(probe)}")
            continue
        return engine
    pytest.skip("no usable container engine: " + "; ".join(reasons))


async def test_the_image_migrates_serves_and_runs_a_job_on_two_workers(tmp_path: Path) -> None:
    engine = _engine()
    tag = f"localhost/mirror-neuron:test-{uuid.uuid4().hex[:8]}"
    podman = Path(engine[0]).name == "podman"
    build = _call(
        engine, "build", *(["--format", "docker"] if podman else []), *FLAGS,
        "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}", "-t", tag, str(ROOT), timeout=1800,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    name, async_url = await create_pg_database("mn_image")
    url = async_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    containers: list[str] = []
    try:
        who = _call(engine, "run", "--rm", *FLAGS, "--entrypoint", "id", tag, "-u")
        assert who.returncode == 0 and who.stdout.strip() not in ("", "0"), who.stderr
        version = _call(engine, "run", "--rm", *FLAGS, tag, "--version")
        assert version.stdout.startswith("mirror-neuron "), version.stderr

        host_network = [] if any(flag.startswith("--network") for flag in FLAGS) else ["--network", "host"]
        common = [*FLAGS, *host_network, "-e", f"MIRROR_NEURON_DATABASE_URL={url}"]
        migrated = _call(engine, "run", "--rm", *common, tag, "migrate", timeout=300)
        assert migrated.returncode == 0, migrated.stderr
        assert migrated.stdout.strip() == f"database at revision {head_revision()}"

        port, token, suffix = free_port(), uuid.uuid4().hex, uuid.uuid4().hex[:6]
        node = [*common, "-e", "MIRROR_NEURON_AUTO_MIGRATE=0"]
        api = [*node, "-e", f"MIRROR_NEURON_API_PORT={port}", "-e", f"MIRROR_NEURON_API_TOKEN={token}",
               "-e", "MIRROR_NEURON_RUNTIME_ENABLED=0", "-e", f"MIRROR_NEURON_NODE_NAME=api-{suffix}"]
        for args in (
            [*api, tag],  # the image's default command: serve
            [*node, "-e", "MIRROR_NEURON_API_ENABLED=0", "-e", f"MIRROR_NEURON_NODE_NAME=worker-1-{suffix}", tag, "worker"],
            [*node, "-e", "MIRROR_NEURON_API_ENABLED=0", "-e", f"MIRROR_NEURON_NODE_NAME=worker-2-{suffix}", tag, "worker"],
        ):
            started = _call(engine, "run", "-d", *args)
            assert started.returncode == 0, started.stderr
            containers.append(started.stdout.strip().splitlines()[-1])

        # The image's HEALTHCHECK command, run in the api container, passes once the node is ready.
        wait_for(lambda: _call(engine, "exec", containers[0], "python3", "-m", "app.healthcheck").returncode == 0,
                 120, "the api container's healthcheck")
        env = {**os.environ, "MIRROR_NEURON_API_TOKEN": token}
        wait_for(lambda: _alive_nodes(port, env) >= 3, 120, "three nodes registered")
        job = subprocess.run(
            [sys.executable, "-m", "app", "submit", "--bundle", "prime_sweep_4_workers", "--wait", "--timeout", "300",
             "--url", f"http://127.0.0.1:{port}"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=360,
        )
        assert job.returncode == 0, job.stdout + job.stderr
        assert '"prime_count": 32' in job.stdout  # executors ran bash and python3 inside the workers

        for container in containers:  # SIGTERM through tini: a graceful exit 0
            assert _call(engine, "stop", "-t", "60", container, timeout=120).returncode == 0
            state = _call(engine, "inspect", "--format", "{{.State.ExitCode}}", container)
            assert state.stdout.strip() == "0", _call(engine, "logs", container).stderr[-3000:]
    finally:
        for container in containers:
            logs = _call(engine, "logs", container)
            print(f"== {container}\n{(logs.stdout + logs.stderr)[-3000:]}")  # shown when the test fails
            _call(engine, "rm", "-f", container)
        _call(engine, "rmi", "-f", tag)
        await drop_pg_database(name)


def _alive_nodes(port: int, env: dict[str, str]) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/nodes")
    request.add_header("Authorization", f"Bearer {env['MIRROR_NEURON_API_TOKEN']}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            nodes = json.loads(response.read())["data"]
    except OSError:
        return 0
    return sum(1 for node in nodes if node["status"] == "alive")
