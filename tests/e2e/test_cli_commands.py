"""Every `mirror-neuron` client command end to end: real CLI processes against a real server, on SQLite
and Postgres — outputs (tables with headers, JSON that parses), `--wait` progress on a pseudo-terminal
and as plain lines, and the documented exit codes (issue 20)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from app.cli import cli
from app.client import Client
from tests.e2e.conftest import EXAMPLES, NodeSpec, serving_examples
from tests.runtime.processes import ROOT, NodeProcess

PAUSE_RESUME = EXAMPLES / "manifests" / "pause_resume.json"


@pytest.fixture(scope="module")
def node_spec() -> NodeSpec:
    """One node serving the examples' bundles (tests/e2e/conftest.py starts it)."""
    return serving_examples("cli-node")


def mn(server: NodeProcess | None, *args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `python -m app <args>` against the server (its URL from the environment, as a user would)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIRROR_NEURON_")}
    if server is not None:
        env["MIRROR_NEURON_URL"] = server.url
    return subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=ROOT, env=env, input=stdin, capture_output=True, text=True,
        timeout=timeout,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def header_columns(line: str) -> list[int]:
    """Where each column of a table header starts (columns are two or more spaces apart)."""
    return [0] + [m.end() for m in re.finditer(r"  +", line)]


def test_submit_wait_show_and_list(server: NodeProcess) -> None:
    done = mn(server, "submit", "examples/prime_sweep_4_workers", "--wait", "--timeout", "300")
    job_id, *result = ok(done).splitlines()
    assert json.loads("\n".join(result))["output"]["prime_count"] == 32
    # Not a terminal: plain lines, one per status, no carriage returns.
    assert "\r" not in done.stderr and f"{job_id}: completed" in done.stderr.splitlines()

    shown = ok(mn(server, "show", job_id))
    assert f"job:        {job_id}" in shown and "status:     completed" in shown
    agents_header = next(line for line in shown.splitlines() if line.startswith("AGENT "))
    assert agents_header.split() == ["AGENT", "TYPE", "TEMPLATE", "ROLE", "STATUS", "PROCESSED", "MAILBOX", "LAST", "ERROR"]
    assert '"prime_count": 32' in shown
    details = json.loads(ok(mn(server, "show", job_id, "--output", "json")))
    assert details["job"]["job_id"] == job_id and len(details["agents"]) == 7

    listing = ok(mn(server, "jobs")).splitlines()
    assert listing[0].split() == ["JOB", "ID", "STATUS", "GRAPH", "UPDATED", "LAST", "EVENT"]
    starts = header_columns(listing[0])
    assert len(starts) == 5 and len(listing) >= 2
    for row in listing[1:]:  # every cell starts under its header, two spaces after the cell before
        assert all(row[i] != " " and row[i - 2 : i] == "  " for i in starts[1:]), (listing[0], row)
    page = json.loads(ok(mn(server, "jobs", "--output", "json", "--graph", "prime_sweep_4_workers")))
    assert [job["job_id"] for job in page["data"]] == [job_id] and page["next_cursor"] is None
    assert ok(mn(server, "jobs", "--status", "running", "--output", "ndjson")).strip() == ""
    live = ok(mn(server, "jobs", "--live"))
    assert job_id not in live and live.startswith("JOB ID")


def test_events_in_every_format_and_the_feed(server: NodeProcess) -> None:
    job_id = ok(mn(server, "submit", str(PAUSE_RESUME))).strip()
    follower = subprocess.Popen(
        [sys.executable, "-m", "app", "events", job_id, "--follow", "--output", "table", "--url", server.url],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    timed_out = mn(server, "wait", job_id, "--timeout", "1")
    assert timed_out.returncode == 2 and "not finished after 1 s" in timed_out.stderr
    ok(mn(server, "cancel", job_id))
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["SEQ", "POSITION", "TIME", "TYPE", "AGENT", "PAYLOAD"]
    assert lines[1].split()[3] == "job_submitted" and lines[-1].split()[3] == "job_cancelled"

    ndjson = [json.loads(line) for line in ok(mn(server, "events", job_id)).splitlines()]
    assert [e["sequence"] for e in ndjson] == list(range(1, len(ndjson) + 1)) and len(lines) == len(ndjson) + 1
    as_json = json.loads(ok(mn(server, "events", job_id, "--output", "json", "--after", "2")))
    assert as_json == ndjson[2:]
    table = ok(mn(server, "events", job_id, "--output", "table")).splitlines()
    assert table[0].split() == ["SEQ", "POSITION", "TIME", "TYPE", "AGENT", "PAYLOAD"] and len(table) == len(ndjson) + 1
    feed = json.loads(ok(mn(server, "feed", "--output", "json", "--after", str(ndjson[0]["position"] - 1))))
    assert [e["event_id"] for e in feed if e["job_id"] == job_id] == [e["event_id"] for e in ndjson]


def test_controls_message_and_cleanup(server: NodeProcess) -> None:
    job_id = ok(mn(server, "submit", str(PAUSE_RESUME), "--idempotency-key", "cli-controls")).strip()
    replay = json.loads(ok(mn(server, "submit", str(PAUSE_RESUME), "--idempotency-key", "cli-controls", "-o", "json")))
    assert replay == {"job_id": job_id, "status": replay["status"], "replayed": True}
    with Client(server.url) as client:  # the root has handled its seed: the job can be paused
        next(e for e in client.follow_events(job_id) if e.type == "message_processed")
    assert ok(mn(server, "pause", job_id)) == f"{job_id}: paused\n"
    again = mn(server, "pause", job_id)
    assert again.returncode == 1 and again.stderr == f"error: job {job_id} is not running (HTTP 409)\n"
    delivered = json.loads(
        ok(mn(server, "message", job_id, "sink", "-", "--type", "manual_result", "-o", "json",
              stdin='{"payload": {"text": "from the shell"}}'))
    )
    assert delivered["agent_id"] == "sink" and len(delivered["message_id"]) == 14
    ghost = mn(server, "message", job_id, "ghost")
    assert ghost.returncode == 1 and f"agent ghost was not found in job {job_id}" in ghost.stderr
    assert json.loads(ok(mn(server, "resume", job_id, "-o", "json"))) == {"status": "resumed", "job_id": job_id}
    waited = mn(server, "wait", job_id, "-o", "json")
    assert json.loads(ok(waited))["result"]["output"]["last_message"] == {"text": "from the shell"}
    terminal = mn(server, "cancel", job_id)
    assert terminal.returncode == 1 and "already in a terminal state (completed)" in terminal.stderr
    cleaned = json.loads(ok(mn(server, "cleanup", "-o", "json")))
    assert job_id in cleaned["deleted_jobs"]
    gone = mn(server, "show", job_id)
    assert gone.returncode == 1 and f"job {job_id} was not found" in gone.stderr


def test_bundles_nodes_summary_and_audit(server: NodeProcess) -> None:
    listing = ok(mn(server, "bundles")).splitlines()
    assert listing[0].split()[:2] == ["BUNDLE", "VERSION"] and any(row.startswith("prime_sweep_4_workers ") for row in listing)
    assert ok(mn(server, "bundles", "list")) == "\n".join(listing) + "\n"
    bundles = json.loads(ok(mn(server, "bundles", "list", "-o", "json")))
    assert "research_flow_v1" in [b["bundle_id"] for b in bundles]
    detail = json.loads(ok(mn(server, "bundles", "show", "research_flow_v1", "-o", "json")))
    assert detail["history"][0]["event"] == "bundle_registered"
    assert "VERSION  EVENT" in ok(mn(server, "bundles", "show", "research_flow_v1"))
    assert ok(mn(server, "bundles", "reload", "research_flow_v1")) == "research_flow_v1: No bundle changes detected\n"
    missing = mn(server, "bundles", "reload", "nobody")
    assert missing.returncode == 1 and "Bundle nobody not found" in missing.stderr
    nodes = ok(mn(server, "nodes")).splitlines()
    assert nodes[0].split()[:3] == ["NODE", "STATUS", "SELF"] and nodes[1].startswith("cli-node ")
    assert json.loads(ok(mn(server, "nodes", "-o", "json")))[0]["self?"] is True
    summary = json.loads(ok(mn(server, "summary", "-o", "json")))
    assert set(summary["job_counts"]) >= {"completed", "cancelled"}
    assert ok(mn(server, "summary")).startswith("STATUS")
    job_id = ok(mn(server, "submit", "--bundle", "research_flow_v1", "--wait")).splitlines()[0]
    audited = mn(server, "audit", job_id)
    assert audited.returncode == 0 and f"OK {job_id}" in audited.stdout
    everything = mn(server, "audit", "--all")
    assert everything.returncode == 0 and "jobs replay to exactly what the API shows" in everything.stdout


def test_progress_on_a_terminal(server: NodeProcess) -> None:
    """`submit --wait` redraws one progress line in place when stderr is a terminal."""
    master, slave = pty.openpty()
    env = {**os.environ, "MIRROR_NEURON_URL": server.url}
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "submit", "examples/prime_sweep_4_workers", "--wait"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=slave, text=True,
    )
    os.close(slave)
    screen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        assert ready, "no progress output"
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    stdout, _ = process.communicate(timeout=60)
    os.close(master)
    assert process.returncode == 0, screen
    text = screen.decode()
    redraws = text.split("\r\x1b[K")
    assert len(redraws) > 2  # redrawn in place, not one line per update
    final = redraws[-1].strip()
    job_id = stdout.splitlines()[0]
    assert re.fullmatch(rf"{job_id}: completed · agents 7/7 · executor runs 5 · 59 events · \d+\.\ds", final), final


def test_exit_codes_usage_and_unreachable(server: NodeProcess, tmp_path: Path) -> None:
    failed = mn(server, "submit", "examples/shell_python_chain_fail_exit", "--wait")
    assert failed.returncode == 1 and "command exited with status 3" in failed.stdout
    invalid = tmp_path / "invalid.json"
    invalid.write_text('{"graph": {}, "agents": []}')
    refused = mn(server, "submit", str(invalid))
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        "error: Manifest validation failed (HTTP 400)",
        "  - manifest_version is required",
        "  - graph_id is required",
        "  - nodes must not be empty",
        "  - manifest must define at least one entrypoint or one node with role root/root_coordinator",
    ]
    assert mn(server, "submit").returncode == 2
    assert mn(server, "jobs", "--limit", "0").returncode == 2
    assert mn(server, "no-such-command").returncode == 2
    unreachable = mn(None, "jobs", "--url", "http://127.0.0.1:9")
    assert unreachable.returncode == 3 and unreachable.stderr.startswith("error: cannot reach http://127.0.0.1:9")
    version = mn(None, "--version")
    assert version.returncode == 0 and re.fullmatch(r"mirror-neuron \d+\.\d+\.\d+\S*\n", version.stdout)
    script = ok(mn(None, "completion", "bash"))
    assert "_MIRROR_NEURON_COMPLETE" in script and "complete " in script
    env = {**os.environ, "_MIRROR_NEURON_COMPLETE": "bash_complete", "COMP_WORDS": "mirror-neuron bun", "COMP_CWORD": "1"}
    completed = subprocess.run([sys.executable, "-m", "app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert "plain,bundles" in completed.stdout.splitlines()


def _commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(group.commands.items()):
        yield prefix + name, command
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + name + " ")


def test_every_option_has_help_and_names_its_environment_variable() -> None:
    for name, command in _commands(cli):
        assert command.help, name
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts}"
                if param.envvar:
                    assert param.show_envvar, f"{name} {param.opts}"
        names = {p.name for p in command.params}
        if "url" in names:
            token = next(p for p in command.params if p.name == "token")
            assert token.envvar == "MIRROR_NEURON_API_TOKEN"
