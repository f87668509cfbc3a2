"""Access (issue 6 item 5): the bearer token on every route but health, the refusal to listen
beyond loopback without one, the executor's scrubbed environment (SPEC §7.5.4), upload and
workdir confinement, and no secret — the token, a database password — in logs or error bodies.

Real `python -m app serve` processes on loopback ports; the executor checks also run single
attempts directly.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.config import ConfigError, Settings
from app.domain.manifest import Upload
from app.http import auth
from app.runtime.executor import run_attempt
from tests.api.conftest import lifecycle_manifest
from tests.conftest import migrate
from tests.runtime.processes import ROOT, NodeProcess, free_port, wait_for
from tests.runtime.test_executor import _request

TOKEN = "tok-3f9a1c77e2b04d5e8a6b"
PASSWORD = "pw-Sekr1t-7d41be"
UNAUTHORIZED = {"error": "missing or invalid bearer token"}
RUNTIME_VARIABLES = {
    "MIRROR_NEURON_INPUT_FILE",
    "MIRROR_NEURON_CONTEXT_FILE",
    "MIRROR_NEURON_MESSAGE_FILE",
    "MIRROR_NEURON_BODY_FILE",
    "MIRROR_NEURON_BODY_CONTENT_TYPE",
    "MIRROR_NEURON_BODY_CONTENT_ENCODING",
    "MIRROR_NEURON_AGENT_TYPE",
    "MIRROR_NEURON_AGENT_TEMPLATE",
    "MIRROR_NEURON_JOB_ID",
    "MIRROR_NEURON_AGENT_ID",
    "MIRROR_NEURON_WORKDIR",
}
PRINT_ENV = [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]


def http(
    base: str,
    method: str,
    path: str,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    body: Any = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request (POSTs carry `body`, default {}); returns status, lower-case headers and the raw body."""
    request = urllib.request.Request(base + path, method=method, headers=dict(headers or {}))
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if method == "POST":
        request.data = json.dumps({} if body is None else body).encode()
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


class SecuredNode(NodeProcess):
    """A node that requires a bearer token; its helper requests carry it."""

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {TOKEN}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")


def write_bundle(root: Path, name: str, config: dict[str, Any], files: dict[str, str]) -> Path:
    """A bundle with one executor node `reader` and the given payload files."""
    directory = root / name
    (directory / "payloads").mkdir(parents=True)
    for relative, content in files.items():
        (directory / "payloads" / relative).write_text(content)
    node = {
        "node_id": "reader",
        "agent_type": "executor",
        "role": "root",
        "config": {"complete_job": True, **config},
    }
    manifest = {"graph_id": name, "manifest_version": "1", "nodes": [node]}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file outside every bundle that no job may read through an upload."""
    path = tmp_path_factory.mktemp("outside") / "secret.txt"
    path.write_text("TOP-SECRET-CONTENT")
    return path


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, secret_file: Path) -> Iterator[SecuredNode]:
    """A node with a token, secrets in its environment, and bundles (one escaping by symlink)."""
    work = tmp_path_factory.mktemp("secured")
    bundles = work / "bundles"
    write_bundle(
        bundles, "reads_data", {"command": "cat data.txt", "upload_paths": ["data.txt"]}, {"data.txt": "d"}
    )
    escape = write_bundle(bundles, "escapes", {"command": "cat leak", "upload_paths": ["leak"]}, {})
    (escape / "payloads" / "leak").symlink_to(secret_file)
    url = f"sqlite+aiosqlite:///{work}/mirror_neuron.db"
    asyncio.run(migrate(url))
    env = {
        "MIRROR_NEURON_API_TOKEN": TOKEN,
        "MIRROR_NEURON_BUNDLES_DIR": str(bundles),
        "MIRROR_NEURON_PRIVATE_SETTING": "must-not-leak",
        "MIRROR_NEURON_PASS_ME": "passed-on-request",
        "HARDENING_PLAIN": "plain-value",
    }
    node = SecuredNode("secured-node", url, work, **env).start()
    try:
        yield node
    finally:
        node.stop()


# ------------------------------------------------------------------------------------ the token


def _routes(node: SecuredNode) -> list[tuple[str, str]]:
    """Every documented route, with ids filled in, plus paths and methods no route has."""
    status, document = node.request("GET", "/api/v1/schema/openapi.json")
    assert status == 200
    routes = [
        (
            method.upper(),
            path.replace("{job_id}", "x-1700000000000-000000000000").replace("{bundle_id}", "demo"),
        )
        for path, item in document["paths"].items()
        for method in item
    ]
    assert len(routes) >= 17
    extra = [
        ("GET", "/api/v1/schema/openapi.json"),
        ("GET", "/api/v1/nowhere"),
        ("DELETE", "/api/v1/jobs"),
        ("OPTIONS", "/api/v1/jobs"),
        ("POST", "/api/v1/health"),
        ("POST", "/"),  # GET / and GET /ui/... are the console's, exempt (SPEC C.5.6; tests/console)
        ("POST", "/ui/"),
    ]
    return routes + extra


def test_every_route_but_health_requires_the_bearer_token(secured: SecuredNode) -> None:
    base = secured.url
    wrong = "x" * len(TOKEN)
    for method, path in _routes(secured):
        if (method, path) == ("GET", "/api/v1/health"):
            assert http(base, method, path)[0] == 200
            continue
        for attempt in (
            {},
            {"Authorization": f"Bearer {wrong}"},
            {"Authorization": f"Bearer {TOKEN}x"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": TOKEN},
        ):
            status, headers, body = http(base, method, path, headers=attempt)
            assert status == 401, (method, path, attempt, status)
            assert json.loads(body) == UNAUTHORIZED
            assert headers["www-authenticate"] == "Bearer"
        assert http(base, method, path, token=TOKEN)[0] != 401, (method, path)


def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert auth.bearer_matches(f"Bearer {TOKEN}".encode(), TOKEN)
    assert not auth.bearer_matches(b"Bearer nope", TOKEN)
    assert calls == [(TOKEN.encode(), TOKEN.encode()), (b"nope", TOKEN.encode())]


# ------------------------------------------------------------------------------------ listening address


def _serve(env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run `python -m app serve` to its exit."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("MIRROR_NEURON_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_a_non_loopback_address_without_a_token_is_refused(tmp_path: Path, host: str) -> None:
    env = {
        "MIRROR_NEURON_API_HOST": host,
        "MIRROR_NEURON_API_PORT": str(free_port()),
        "MIRROR_NEURON_API_TOKEN": "",  # empty counts as unset
        "MIRROR_NEURON_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/never.db",
    }
    done = _serve(env)
    assert done.returncode != 0
    assert (
        f"refusing to listen on {host} without MIRROR_NEURON_API_TOKEN; set MIRROR_NEURON_ALLOW_INSECURE=1 to override"
        in done.stderr
    )
    assert not (tmp_path / "never.db").exists()  # refused before touching anything


@pytest.mark.parametrize(
    "env, allowed",
    [
        ({"MIRROR_NEURON_API_HOST": "localhost"}, True),
        ({"MIRROR_NEURON_API_HOST": "127.8.9.10"}, True),
        ({"MIRROR_NEURON_API_HOST": "::1"}, True),
        ({"MIRROR_NEURON_API_HOST": "0.0.0.0", "MIRROR_NEURON_API_TOKEN": TOKEN}, True),
        ({"MIRROR_NEURON_API_HOST": "0.0.0.0", "MIRROR_NEURON_ALLOW_INSECURE": "1"}, True),
        ({"MIRROR_NEURON_API_HOST": "0.0.0.0", "MIRROR_NEURON_API_ENABLED": "0"}, True),  # a worker
        ({"MIRROR_NEURON_API_HOST": "10.0.0.1"}, False),
        ({"MIRROR_NEURON_API_HOST": "localhost.example.org"}, False),
        ({"MIRROR_NEURON_API_HOST": "0.0.0.0", "MIRROR_NEURON_ALLOW_INSECURE": "0"}, False),
    ],
)
def test_which_settings_may_listen_without_a_token(env: dict[str, str], allowed: bool) -> None:
    if allowed:
        Settings.from_env(env)
    else:
        with pytest.raises(ConfigError, match="^refusing to listen on "):
            Settings.from_env(env)


# ------------------------------------------------------------------------------------ executor environment


def _finished(node: SecuredNode, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = node.request("POST", "/api/v1/jobs", body)
    assert status == 201, answer
    job_id = answer["job_id"]
    terminal = ("completed", "failed", "cancelled")
    return dict(
        wait_for(
            lambda: (
                (d := node.request("GET", f"/api/v1/jobs/{job_id}")[1])["job"]["status"] in terminal and d
            ),
            60,
            f"{job_id} to end",
        )
    )


def test_the_executor_environment_is_scrubbed(secured: SecuredNode) -> None:
    config = {
        "command": PRINT_ENV,
        "complete_job": True,
        "environment": {"MIRROR_NEURON_FROM_CONFIG": "cfg", "COUNT": 5},
        "pass_env": ["MIRROR_NEURON_PASS_ME", "HARDENING_PLAIN", "HARDENING_NEVER_SET"],
    }
    manifest = {
        "graph_id": "env_probe",
        "manifest_version": "1",
        "nodes": [{"node_id": "probe", "agent_type": "executor", "role": "root", "config": config}],
    }
    details = _finished(secured, manifest)
    assert details["job"]["status"] == "completed", details["job"]["result"]
    seen = json.loads(details["job"]["result"]["output"]["sandbox"]["stdout"])
    ours = {name for name in seen if name.startswith("MIRROR_NEURON_")}
    assert ours == RUNTIME_VARIABLES | {"MIRROR_NEURON_FROM_CONFIG", "MIRROR_NEURON_PASS_ME"}
    assert seen["MIRROR_NEURON_PASS_ME"] == "passed-on-request"
    assert seen["MIRROR_NEURON_FROM_CONFIG"] == "cfg" and seen["COUNT"] == "5"
    assert seen["HARDENING_PLAIN"] == "plain-value" and "HARDENING_NEVER_SET" not in seen
    assert seen["MIRROR_NEURON_JOB_ID"] == details["job"]["job_id"]
    everything = json.dumps(seen)
    assert TOKEN not in everything and "must-not-leak" not in everything


# ------------------------------------------------------------------------------------ confinement


def test_uploads_cannot_leave_the_bundle(secured: SecuredNode, secret_file: Path) -> None:
    # A bundle whose upload is a symlink out of payloads/ is never registered.
    status, answer = secured.request("POST", "/api/v1/jobs", {"bundle_id": "escapes"})
    assert (status, answer) == (404, {"error": "Bundle escapes not found"})
    assert "upload source leak for node reader must be inside payloads/" in secured.log_text()
    # A registered bundle whose payload is swapped for such a symlink: submission and reload refuse it.
    details = _finished(secured, {"bundle_id": "reads_data"})
    assert details["job"]["result"]["output"]["sandbox"]["stdout"] == "d"
    bundle = Path(secured.request("GET", "/api/v1/bundles/reads_data")[1]["path"])
    data = bundle / "payloads" / "data.txt"
    data.unlink()
    data.symlink_to(secret_file)
    try:
        errors = ["upload source data.txt for node reader must be inside payloads/"]
        status, answer = secured.request("POST", "/api/v1/jobs", {"bundle_id": "reads_data"})
        assert (status, answer) == (400, {"error": "Manifest validation failed", "errors": errors})
        status, answer = secured.request("POST", "/api/v1/bundles/reads_data/reload")
        assert (status, answer) == (422, {"error": "Manifest validation failed", "errors": errors})
    finally:
        data.unlink()
        data.write_text("d")
    status, page = secured.request("GET", "/api/v1/events?limit=1000")
    assert "TOP-SECRET-CONTENT" not in json.dumps(page)


@pytest.mark.parametrize(
    "workdir",
    [
        "..",
        "../..",
        "/sandbox/job/..",
        "/sandbox/job/../../etc",
        "dir/../../x",
        "dir/out",
        "/sandbox/job/dir/out",
    ],
)
async def test_a_workdir_mapped_into_the_sandbox_cannot_leave_it(tmp_path: Path, workdir: str) -> None:
    payloads = tmp_path / "payloads"
    (payloads / "dir").mkdir(parents=True)
    (payloads / "dir" / "out").symlink_to(tmp_path)  # copied with its directory, as a symlink
    marker = tmp_path / "ran"
    config = {"command": f"touch {marker}", "workdir": workdir}
    uploads = [Upload("dir", "dir")]
    for outside in (
        tmp_path / "etc",
        tmp_path / "temp" / "x",
    ):  # escapes that exist: only confinement refuses
        outside.mkdir(parents=True)
    outcome = await run_attempt(_request(tmp_path, config, uploads=uploads))
    assert not outcome.ok and outcome.transient is False
    assert outcome.error == f"workdir {workdir} for node worker must stay inside the staging directory"
    assert not marker.exists()


async def test_a_workdir_inside_the_sandbox_or_absolute_is_used(tmp_path: Path) -> None:
    (tmp_path / "payloads" / "dir").mkdir(parents=True)
    for workdir in ("dir", "/sandbox/job/dir/../dir", "/sandbox/job", str(tmp_path)):
        outcome = await run_attempt(
            _request(tmp_path, {"command": "pwd", "workdir": workdir}, uploads=[Upload("dir", "dir")])
        )
        assert outcome.ok, (workdir, outcome.error)


# ------------------------------------------------------------------------------------ secrets


def test_no_secret_in_logs_or_error_bodies(tmp_path: Path) -> None:
    """A node whose Postgres URL carries a password and cannot connect, behind a token."""
    url = f"postgresql+asyncpg://mnuser:{PASSWORD}@127.0.0.1:{free_port()}/mirror"
    env = {"MIRROR_NEURON_API_TOKEN": TOKEN, "MIRROR_NEURON_AUTO_MIGRATE": "0"}
    node = SecuredNode("secret-node", url, tmp_path, **env)
    with open(node.log_path, "ab") as log:  # the child keeps its own descriptor
        node.process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"],
            cwd=ROOT,
            env=node.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    bodies: list[bytes] = []
    try:
        wait_for(lambda: _answers(node), 30, "the node to serve")
        time.sleep(2.5)  # let it retry its start once more, logging again
        for method, path in _routes_without_schema():
            for token in (None, "wrong", TOKEN):
                sent = lifecycle_manifest() if path == "/api/v1/jobs" else {"agent_id": "sink"}
                status, headers, body = http(node.url, method, path, token=token, body=sent)
                bodies.append(body)
                if token == TOKEN and path not in (
                    "/api/v1/health",
                    "/api/v1/health/ready",
                    "/api/v1/nowhere",
                ):
                    assert (status, json.loads(body)) == (503, {"error": "database unavailable"}), (
                        method,
                        path,
                    )
        status, _, body = http(node.url, "GET", "/api/v1/health/ready", token=TOKEN)
        assert status == 503 and json.loads(body)["error"].startswith("database unavailable: ")
        bodies.append(body)
    finally:
        node.stop()
    text = node.log_path.read_text() + "\n".join(b.decode("utf-8", "replace") for b in bodies)
    assert "database unavailable" in text  # the failures were there to be logged
    for secret in (PASSWORD, TOKEN, url):
        assert secret not in text
    for body in bodies:  # error bodies name no host or user either (SPEC §2.1)
        assert b"mnuser" not in body and b"127.0.0.1" not in body


def test_a_failed_migration_logs_no_password(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://mnuser:{PASSWORD}@127.0.0.1:5432/postgres"  # no such role
    done = _serve(
        {
            "MIRROR_NEURON_DATABASE_URL": url,
            "MIRROR_NEURON_API_PORT": str(free_port()),
            "MIRROR_NEURON_API_TOKEN": TOKEN,
        }
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "migration of postgresql+asyncpg://mnuser:***@127.0.0.1:5432/postgres failed" in output
    assert 'role "mnuser" does not exist' in output  # the cause's own message is logged
    assert PASSWORD not in output and TOKEN not in output


def _answers(node: NodeProcess) -> bool:
    try:
        return http(node.url, "GET", "/api/v1/health")[0] == 200
    except OSError:
        return False


def _routes_without_schema() -> list[tuple[str, str]]:
    job = "x-1700000000000-000000000000"
    return [
        ("GET", "/api/v1/health"),
        ("GET", "/api/v1/system/summary"),
        ("GET", "/api/v1/nodes"),
        ("POST", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs"),
        ("POST", "/api/v1/jobs/cleanup"),
        ("GET", f"/api/v1/jobs/{job}"),
        ("POST", f"/api/v1/jobs/{job}/cancel"),
        ("POST", f"/api/v1/jobs/{job}/pause"),
        ("POST", f"/api/v1/jobs/{job}/resume"),
        ("POST", f"/api/v1/jobs/{job}/messages"),
        ("GET", f"/api/v1/jobs/{job}/events"),
        ("GET", "/api/v1/events"),
        ("GET", "/api/v1/bundles"),
        ("GET", "/api/v1/bundles/demo"),
        ("POST", "/api/v1/bundles/demo/reload"),
        ("GET", "/api/v1/nowhere"),
    ]
