"""What every client command shares: the server options, the exit codes, errors and output formats."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import click
import msgspec

from app.client import ApiError, Client

# Exit codes (README "Command line"): 0 done (for `--wait`: completed); 1 the server refused the
# request, the job failed or was cancelled, or an audit found differences; 2 a usage error or a
# `--wait` that timed out (SPEC Appendix B.22); 3 the server could not be reached.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_UNREACHABLE = 0, 1, 2, 2, 3

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def default_url() -> str:
    """`http://127.0.0.1:$MIRROR_NEURON_API_PORT` (4000 when unset)."""
    return f"http://127.0.0.1:{os.environ.get('MIRROR_NEURON_API_PORT', '4000')}"


def server_options(command: F) -> F:
    """`--url` and `--token`, read from the environment when not given."""
    command = click.option(
        "--token",
        envvar="MIRROR_NEURON_API_TOKEN",
        show_envvar=True,
        help="Bearer token of the server (the read-only token is enough for reads).",
    )(command)
    return click.option(
        "--url",
        envvar="MIRROR_NEURON_URL",
        show_envvar=True,
        default=default_url,
        show_default="http://127.0.0.1:$MIRROR_NEURON_API_PORT",
        help="Base URL of the server.",
    )(command)


def output_option(*choices: str, default: str) -> Callable[[F], F]:
    """`--output` with the given formats."""
    return click.option(
        "--output",
        "-o",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help="Output format: " + ", ".join(choices) + ".",
    )


def fail(message: str, code: int = EXIT_FAILED) -> None:
    """Print `error: <message>` on stderr and exit with `code`."""
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def report(exc: ApiError) -> None:
    """Print the server's error (and each of its `errors`) and exit 1, or 3 when nothing answered."""
    click.echo(f"error: {exc.error}" if exc.status == 0 else f"error: {exc.error} (HTTP {exc.status})", err=True)
    for line in exc.errors:
        click.echo(f"  - {line}", err=True)
    raise SystemExit(EXIT_UNREACHABLE if exc.status == 0 else EXIT_FAILED)


def with_client(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give the command a `Client` built from `--url`/`--token`; report API errors with exit codes."""

    @functools.wraps(command)
    def run(*args: Any, url: str, token: str | None, **kwargs: Any) -> Any:
        try:
            with Client(url, token=token) as client:
                return command(client, *args, **kwargs)
        except ApiError as exc:
            report(exc)

    return server_options(run)


def plain(value: Any) -> Any:
    """A typed result as JSON-ready builtins (field names as the API writes them)."""
    return msgspec.to_builtins(value)


def print_json(value: Any, *, indent: int | None = 2) -> None:
    """One JSON document on stdout."""
    click.echo(json.dumps(plain(value), indent=indent, ensure_ascii=False))


def print_answer(value: T, output: str, text: Callable[[T], str]) -> None:
    """`value` as one JSON document for `--output json`, otherwise as `text(value)`."""
    if output == "json":
        print_json(value)
    else:
        click.echo(text(value))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """An aligned text table with a header row; None shows as `-`."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    lines = [headers, *cells]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def parse_json_argument(text: str, what: str) -> Any:
    """A JSON value given on the command line (`@file` reads a file, `-` reads stdin)."""
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        with open(text[1:], encoding="utf-8") as handle:
            text = handle.read()
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"{what} is not valid JSON: {exc}") from None


def complete_job_ids(ctx: click.Context, _: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of job ids from the server's newest jobs (nothing when it cannot be asked)."""
    params = ctx.params
    try:
        with Client(params.get("url") or default_url(), token=params.get("token"), timeout=2, retries=0) as client:
            return [job.job_id for job in client.jobs(limit=100).data if job.job_id.startswith(incomplete)]
    except (ApiError, OSError):
        return []
