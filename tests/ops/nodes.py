"""Real `serve` and `worker` processes with an operations listener, scraped like Prometheus does."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.runtime.processes import ROOT, NodeProcess, free_port


class OpsNode(NodeProcess):
    """`mirror-neuron serve` or `worker` with MIRROR_NEURON_METRICS_PORT, JSON logs by default."""

    def __init__(self, command: str, name: str, database_url: str, workdir: Path, **env: str) -> None:
        self.metrics_port = free_port()
        env = {
            "MIRROR_NEURON_METRICS_PORT": str(self.metrics_port),
            "MIRROR_NEURON_LOG_FORMAT": "json",
            **env,
        }
        super().__init__(name, database_url, workdir, **env)
        self.command = command

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        """An API request with the node's token; returns status, JSON body and response headers."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        if data is not None:
            req.add_header("Content-Type", "application/json")
        token = self.env.get("MIRROR_NEURON_API_TOKEN")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                return response.status, json.loads(response.read()), dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null"), dict(exc.headers)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, answer, _ = self.call(method, path, body)
        return status, answer

    def ops(self, path: str) -> tuple[int, bytes]:
        """GET a path of the operations listener."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def start(self) -> OpsNode:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app", self.command], cwd=ROOT, env=self.env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"{self.name} exited: {self.log()}"
            try:
                if self.ops("/readyz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} did not become ready: {self.log()}")

    def scrape(self) -> dict[str, Any]:
        """The families of `GET /metrics`, parsed by prometheus_client: name → Metric."""
        status, body = self.ops("/metrics")
        assert status == 200, body
        return {family.name: family for family in text_string_to_metric_families(body.decode())}

    def log_lines(self) -> list[dict[str, Any]]:
        """Every line of the process's log, each parsed as JSON (fails on a line that is not)."""
        lines = self.log_path.read_text().splitlines()
        parsed = []
        for number, line in enumerate(lines, 1):
            try:
                parsed.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"{self.log_path.name}:{number} is not JSON: {line!r}") from None
        return parsed


def value(families: dict[str, Any], name: str, **labels: str) -> float:
    """The sum of the samples `name` whose labels include `labels` (0 when none)."""
    family = families.get(name)
    for suffix in ("_total", "_count", "_sum", "_bucket"):
        family = family or families.get(name.removesuffix(suffix))
    if family is None:
        return 0.0
    return sum(
        s.value for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )
