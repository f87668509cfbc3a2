"""Real node processes for crash tests: `python -m app serve` with its own port and name."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NodeProcess:
    """One `mirror-neuron serve` process (or `worker`: no API, so `start` does not wait for it)."""

    def __init__(self, name: str, database_url: str, workdir: Path, command: str = "serve", **env: str) -> None:
        self.name = name
        self.command = command
        self.port = free_port()
        self.log_path = workdir / f"{name}-{self.port}.log"
        self.env = {
            **os.environ,
            "MIRROR_NEURON_DATABASE_URL": database_url,
            "MIRROR_NEURON_NODE_NAME": name,
            "MIRROR_NEURON_API_PORT": str(self.port),
            "MIRROR_NEURON_HEARTBEAT_SECONDS": "1",
            "MIRROR_NEURON_LEASE_TTL_SECONDS": "4",
            "MIRROR_NEURON_POLL_INTERVAL_MS": "100",
            "MIRROR_NEURON_TEMP_DIR": str(workdir / "staging"),
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> NodeProcess:
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app", self.command], cwd=ROOT, env=self.env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        if self.command != "serve":
            return self
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"{self.name} exited: {self.log()}"
            try:
                if self.request("GET", "/api/v1/health/ready")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} did not become ready: {self.log()}")

    def log(self) -> str:
        """The end of the log, for failure messages."""
        return self.log_text()[-4000:]

    def log_text(self) -> str:
        """The whole log (every request writes an access line: a warning soon leaves the end)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.env.get("MIRROR_NEURON_API_TOKEN"):
            req.add_header("Authorization", f"Bearer {self.env['MIRROR_NEURON_API_TOKEN']}")
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL, like a crash."""
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM and wait for the graceful exit."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.process.returncode or 0)


def slow_prime_bundles(target: Path, delay_seconds: float) -> Path:
    """A copy of the prime sweep bundle whose workers sleep before computing."""
    bundle = target / "prime_sweep_4_workers"
    shutil.copytree(ROOT / "examples" / "prime_sweep_4_workers", bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    for node in manifest["nodes"]:
        command = node.get("config", {}).get("command")
        if node["node_id"].startswith("prime_worker_") and isinstance(command, list):
            node["config"]["command"] = ["bash", "-c", f"sleep {delay_seconds} && exec " + " ".join(command)]
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return target


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    """Poll `predicate()` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
