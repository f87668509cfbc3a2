"""Job commands: submit, wait, jobs, show, events, feed, cancel, pause, resume, message, cleanup."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import click

from app.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    complete_job_ids,
    fail,
    output_option,
    parse_json_argument,
    plain,
    print_answer,
    print_json,
    table,
    with_client,
)
from app.client import ApiError, Client, Progress, Submission
from app.wire import EventRecord, JobDetails

JOB_ID = click.argument("job_id", shell_complete=complete_job_ids)
IDEMPOTENCY_KEY = click.option(
    "--idempotency-key", metavar="KEY", help="Idempotency-Key header: a retry with the same key appends nothing."
)


# ------------------------------------------------------------------ submit and wait


def _manifest_file(path: Path) -> dict[str, Any]:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"{path} is not a readable JSON file: {exc}", EXIT_USAGE)
    if not isinstance(body, dict):
        fail(f"{path} must contain a JSON object", EXIT_USAGE)
    return dict(body)


def _graph_id(directory: Path) -> str:
    manifest = _manifest_file(directory / "manifest.json") if (directory / "manifest.json").is_file() else None
    if manifest is None:
        fail(f"{directory} has no manifest.json", EXIT_USAGE)
    graph_id = manifest.get("graph_id") if manifest else None
    if not isinstance(graph_id, str) or not graph_id:
        fail(f"{directory / 'manifest.json'} has no graph_id", EXIT_USAGE)
    return str(graph_id)


def _registered(client: Client, bundle_id: str) -> bool:
    try:
        client.bundle(bundle_id)
    except ApiError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _submit_directory(client: Client, directory: Path, inputs: Any, key: str | None) -> Submission:
    """SPEC C.2.8: a registered bundle is submitted by id; otherwise the directory is uploaded first."""
    graph_id = _graph_id(directory)
    if _registered(client, graph_id):
        return client.submit(bundle_id=graph_id, initial_inputs=inputs, idempotency_key=key)
    click.echo(f"bundle {graph_id} is not registered on the server; uploading {directory}", err=True)
    try:
        uploaded = client.upload_bundle(directory)
    except ApiError as exc:
        if exc.status in (404, 405):
            fail(f"bundle {graph_id} is not registered on the server, and the server does not accept uploads")
        raise
    click.echo(f"uploaded {uploaded.bundle_path}", err=True)
    return client.submit(bundle_path=uploaded.bundle_path, initial_inputs=inputs, idempotency_key=key)


class ProgressView:
    """`--wait` progress on stderr: one line redrawn in place on a terminal, plain lines otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self.status = ""
        self.drawn = 0.0

    @staticmethod
    def line(p: Progress) -> str:
        failed = f" ({p.executor_failures} failed)" if p.executor_failures else ""
        return (
            f"{p.job_id}: {p.status} · agents {len(p.agents_done)}/{p.agents_total} · "
            f"executor runs {p.executor_runs}{failed} · {p.events} events · {p.elapsed:.1f}s"
        )

    def __call__(self, p: Progress) -> None:
        if self.live:
            now = time.monotonic()
            if now - self.drawn >= 0.1 or p.status != self.status:
                self.stream.write("\r\x1b[K" + self.line(p))
                self.stream.flush()
                self.drawn = now
        elif p.status != self.status:
            self.stream.write(f"{p.job_id}: {p.status}\n")
            self.stream.flush()
        self.status = p.status

    def finish(self, p: Progress | None) -> None:
        if self.live and p is not None:
            self.stream.write("\r\x1b[K" + self.line(p) + "\n")
            self.stream.flush()


def _wait(client: Client, job_id: str, timeout: float, output: str) -> int:
    view = ProgressView(sys.stderr)
    seen: list[Progress] = []

    def progress(p: Progress) -> None:
        if not seen:
            seen.append(p)
        view(p)

    try:
        details = client.wait(job_id, timeout=timeout, on_progress=progress)
    except TimeoutError:
        view.finish(seen[0] if seen else None)
        click.echo(f"{job_id}: not finished after {timeout:g} s", err=True)
        return EXIT_TIMEOUT
    view.finish(seen[0] if seen else None)
    if output == "json":
        print_json({"job_id": job_id, "status": details.job.status, "result": details.job.result})
    else:
        click.echo(json.dumps(details.job.result, indent=2, ensure_ascii=False))
    return EXIT_OK if details.job.status == "completed" else EXIT_FAILED


@click.command()
@click.argument("target", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--bundle", "bundle_id", metavar="ID", help="Submit the bundle registered on the server under ID.")
@click.option("--inputs", metavar="JSON", help="initial_inputs for a bundle submission (JSON, @file or -).")
@IDEMPOTENCY_KEY
@click.option("--wait", is_flag=True, help="Follow the job until it ends; exit 0 completed, 1 failed/cancelled, 2 timeout.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds --wait waits.")
@output_option("text", "json", default="text")
@with_client
def submit(
    client: Client,
    target: Path | None,
    bundle_id: str | None,
    inputs: str | None,
    idempotency_key: str | None,
    wait: bool,
    timeout: float,
    output: str,
) -> None:
    """Submit a job: TARGET is a manifest file or a bundle directory, or use --bundle ID.

    A bundle directory is submitted by its graph_id when the server has it registered, otherwise
    it is uploaded first (and the command says so). Prints the job id.
    """
    if (target is None) == (bundle_id is None):
        fail("give a manifest file, a bundle directory or --bundle ID (one of them)", EXIT_USAGE)
    initial = parse_json_argument(inputs, "--inputs") if inputs is not None else None
    if bundle_id is not None:
        job = client.submit(bundle_id=bundle_id, initial_inputs=initial, idempotency_key=idempotency_key)
    elif target is not None and target.is_dir():
        job = _submit_directory(client, target, initial, idempotency_key)
    else:
        if initial is not None:
            fail("--inputs applies to bundles; put initial_inputs in the manifest", EXIT_USAGE)
        assert target is not None
        job = client.submit(_manifest_file(target), idempotency_key=idempotency_key)
    if output == "json" and not wait:
        print_json({"job_id": job.job_id, "status": job.status, "replayed": job.replayed})
    elif output != "json":
        click.echo(job.job_id)
    if wait:
        raise SystemExit(_wait(client, job.job_id, timeout, output))


@click.command("wait")
@JOB_ID
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait.")
@output_option("text", "json", default="text")
@with_client
def wait_command(client: Client, job_id: str, timeout: float, output: str) -> None:
    """Follow a job until it ends and print its result (exit 0 completed, 1 failed/cancelled, 2 timeout)."""
    raise SystemExit(_wait(client, job_id, timeout, output))


# ------------------------------------------------------------------ reading jobs


@click.command()
@click.option("--status", multiple=True, help="Only these statuses (repeat or comma-separate).")
@click.option("--graph", "graph_id", metavar="GRAPH_ID", help="Only jobs of this graph_id.")
@click.option("--live", is_flag=True, help="Leave out completed, failed and cancelled jobs.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True, help="Jobs per page.")
@click.option("--cursor", help="Continue after a previous page (its next_cursor).")
@output_option("table", "json", "ndjson", default="table")
@with_client
def jobs(
    client: Client, status: tuple[str, ...], graph_id: str | None, live: bool, limit: int, cursor: str | None, output: str
) -> None:
    """List jobs, most recently updated first."""
    page = client.jobs(
        status=",".join(status) or None, graph_id=graph_id, include_terminal=False if live else None,
        limit=limit, cursor=cursor,
    )
    if output == "json":
        print_json(page)
        return
    if output == "ndjson":
        for job in page.data:
            print_json(job, indent=None)
        return
    rows = [(j.job_id, j.status, j.graph_id, j.updated_at, j.last_event) for j in page.data]
    click.echo(table(("JOB ID", "STATUS", "GRAPH", "UPDATED", "LAST EVENT"), rows))
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}", err=True)


def _show_text(details: JobDetails) -> str:
    job = details.job
    facts = [
        ("job", job.job_id), ("graph", job.graph_id), ("name", job.job_name),
        ("status", job.status + (f" ({job.status_reason})" if job.status_reason else "")),
        ("submitted", job.submitted_at), ("updated", job.updated_at), ("node", job.node),
        ("recoveries", job.recovery_count), ("events", job.last_sequence), ("head", job.last_hash),
        ("bundle", f"{job.bundle.bundle_id} @ {job.bundle.fingerprint[:12]}" if job.bundle else None),
    ]
    summary = "\n".join(f"{label + ':':<12}{'-' if value is None else value}" for label, value in facts)
    agents = table(
        ("AGENT", "TYPE", "TEMPLATE", "ROLE", "STATUS", "PROCESSED", "MAILBOX", "LAST ERROR"),
        [
            (a.agent_id, a.agent_type, a.type, a.role, a.status, a.processed_messages, a.mailbox_depth, a.last_error)
            for a in details.agents
        ],
    )
    result = json.dumps(job.result, indent=2, ensure_ascii=False) if job.result is not None else "-"
    return f"{summary}\n\n{agents}\n\nresult:\n{result}"


@click.command()
@JOB_ID
@output_option("text", "json", default="text")
@with_client
def show(client: Client, job_id: str, output: str) -> None:
    """Show one job: summary, agents table and result."""
    print_answer(client.job(job_id), output, _show_text)


EVENT_COLUMNS = ("SEQ", "POSITION", "TIME", "TYPE", "AGENT", "PAYLOAD")


def _event_row(event: EventRecord) -> tuple[Any, ...]:
    payload = json.dumps(event.payload, ensure_ascii=False, separators=(",", ":"))
    payload = payload if len(payload) <= 60 else payload[:57] + "..."
    return (event.sequence, event.position, event.timestamp, event.type, event.agent_id, payload)


def _print_events(events: Any, output: str, *, streaming: bool) -> None:
    if output == "ndjson":
        for event in events:
            click.echo(json.dumps(plain(event), ensure_ascii=False, separators=(",", ":")))
    elif output == "json":
        print_json([plain(event) for event in events])
    elif streaming:
        # Rows appear as they commit, so the widths are fixed rather than measured.
        widths = (6, 9, 25, 28, 24)
        click.echo("  ".join(h.ljust(w) for h, w in zip(EVENT_COLUMNS, widths, strict=False)) + EVENT_COLUMNS[-1])
        for event in events:
            row = ["-" if v is None else str(v) for v in _event_row(event)]
            click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)) + row[-1])
    else:
        click.echo(table(EVENT_COLUMNS, [_event_row(event) for event in events]))


@click.command()
@JOB_ID
@click.option("--after", type=click.IntRange(0), default=0, show_default=True, help="Only events after this sequence.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until the job ends.")
@output_option("ndjson", "json", "table", default="ndjson")
@with_client
def events(client: Client, job_id: str, after: int, follow: bool, output: str) -> None:
    """Print a job's events (with --follow, live until its terminal event)."""
    stream = client.follow_events(job_id, after=after) if follow else client.iter_events(job_id, after=after)
    _print_events(stream, output, streaming=follow)


@click.command()
@click.option("--after", type=click.IntRange(0), default=0, show_default=True, help="Only events after this position.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events (resumes after a dropped connection).")
@output_option("ndjson", "json", "table", default="ndjson")
@with_client
def feed(client: Client, after: int, follow: bool, output: str) -> None:
    """Print the global feed of job events, in position order."""
    stream = client.follow_feed(after=after) if follow else client.iter_feed(after=after)
    _print_events(stream, output, streaming=follow)


# ------------------------------------------------------------------ controls


def _control(action: str) -> click.Command:
    @click.command(action, help=f"{action.capitalize()} a job.")
    @JOB_ID
    @IDEMPOTENCY_KEY
    @output_option("text", "json", default="text")
    @with_client
    def control(client: Client, job_id: str, idempotency_key: str | None, output: str) -> None:
        answer = getattr(client, action)(job_id, idempotency_key=idempotency_key)
        print_answer(answer, output, lambda change: f"{change.job_id}: {change.status}")

    return control


cancel, pause, resume = (_control(action) for action in ("cancel", "pause", "resume"))


@click.command()
@JOB_ID
@click.argument("agent_id")
@click.argument("message", required=False)
@click.option("--type", "message_type", help="Message type (adds {\"type\": ...} to MESSAGE).")
@IDEMPOTENCY_KEY
@output_option("text", "json", default="text")
@with_client
def message(
    client: Client, job_id: str, agent_id: str, message: str | None, message_type: str | None,
    idempotency_key: str | None, output: str,
) -> None:
    """Deliver an external message to AGENT_ID of a running or paused job.

    MESSAGE is a JSON object (SPEC §6.2: spec form with `envelope`, or legacy form with `type` and
    `payload`), `@file` or `-` for stdin; default {}.
    """
    body = parse_json_argument(message, "MESSAGE") if message is not None else {}
    if not isinstance(body, dict):
        raise click.BadParameter("MESSAGE must be a JSON object")
    if message_type is not None:
        body["type"] = message_type
    answer = client.message(job_id, agent_id, body, idempotency_key=idempotency_key)
    print_answer(answer, output, lambda sent: f"{sent.job_id}: delivered {sent.message_id} to {sent.agent_id}")


@click.command()
@click.option("--all", "all_jobs", is_flag=True, help="Also cancel and delete live jobs.")
@click.option("--older-than", type=click.IntRange(0), metavar="SECONDS", help="Only jobs not updated for this long.")
@IDEMPOTENCY_KEY
@output_option("text", "json", default="text")
@with_client
def cleanup(client: Client, all_jobs: bool, older_than: int | None, idempotency_key: str | None, output: str) -> None:
    """Delete terminal jobs (each deletion is audited in the system stream)."""
    answer = client.cleanup(all=all_jobs, older_than=older_than, idempotency_key=idempotency_key)
    if output == "json":
        print_json(answer)
        return
    for job_id in answer.deleted_jobs:
        click.echo(job_id)
    click.echo(f"deleted {answer.deleted_count} job(s)", err=True)


COMMANDS = (submit, wait_command, jobs, show, events, feed, cancel, pause, resume, message, cleanup)
