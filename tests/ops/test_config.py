"""Refusals at start (SPEC C.3.3, C.5.10) and the log formats."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import ConfigError, Settings
from app.ops.logs import REQUEST_ID, JsonFormatter, TextFormatter
from tests.runtime.processes import ROOT

P = "MIRROR_NEURON_"


@pytest.mark.parametrize("value", ["xml", "JSONL", ""])
def test_an_unknown_log_format_refuses_to_start(value: str) -> None:
    with pytest.raises(ConfigError, match=f"{P}LOG_FORMAT"):
        Settings.from_env({P + "LOG_FORMAT": value})


def test_the_metrics_port_may_not_be_the_api_port() -> None:
    with pytest.raises(ConfigError, match=f"{P}METRICS_PORT"):
        Settings.from_env({P + "METRICS_PORT": "4000", P + "API_PORT": "4000"})
    with pytest.raises(ConfigError, match=f"{P}METRICS_PORT"):
        Settings.from_env({P + "METRICS_PORT": "70000"})
    assert Settings.from_env({P + "METRICS_PORT": "4000", P + "API_ENABLED": "0"}).metrics_port == 4000
    assert Settings.from_env({}).metrics_port is None
    assert Settings.from_env({P + "METRICS_PORT": "9464"}).metrics_host == "127.0.0.1"


def test_a_metrics_port_in_use_refuses_to_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = {
            "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
            P + "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", P + "METRICS_PORT": str(port),
        }
        done = subprocess.run(
            [sys.executable, "-m", "app", "worker"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 1
    assert f"127.0.0.1:{port}" in done.stderr and f"{P}METRICS_PORT" in done.stderr
    assert not (tmp_path / "db.sqlite").exists()  # refused before touching the database


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("mirror_neuron.test", logging.ERROR, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    return record


def test_json_lines_hold_the_fields_and_stay_one_line() -> None:
    formatter = JsonFormatter("node-x")
    try:
        raise ValueError("two\nlines")
    except ValueError:
        record = _record("failed: %s", job_id="job-1")
        record.exc_info = sys.exc_info()
    token = REQUEST_ID.set("rid-1")
    try:
        text = formatter.format(record)
    finally:
        REQUEST_ID.reset(token)
    assert "\n" not in text
    line = json.loads(text)
    assert {k: line[k] for k in ("level", "logger", "node", "request_id", "job_id")} == {
        "level": "ERROR", "logger": "mirror_neuron.test", "node": "node-x", "request_id": "rid-1", "job_id": "job-1",
    }
    assert line["ts"].endswith("Z") and "ValueError: two" in line["exc"]


def test_text_lines_append_the_context() -> None:
    text = TextFormatter().format(_record("job failed: boom", job_id="job-2"))
    assert text.endswith("ERROR mirror_neuron.test: job failed: boom job_id=job-2")
