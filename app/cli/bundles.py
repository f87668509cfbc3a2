"""Bundle commands: list, show, reload, upload."""

from __future__ import annotations

from pathlib import Path

import click

from app.cli.common import output_option, print_answer, table, with_client
from app.client import Client
from app.wire import BundleDetail, BundleSummary, Reloaded, ReloadUnchanged, Uploaded


@click.group(invoke_without_command=True)
@click.pass_context
def bundles(ctx: click.Context) -> None:
    """Registered bundles (without a subcommand: list them)."""
    if ctx.invoked_subcommand is None:
        # Parsed as `bundles list` with no arguments, so its options read their environment variables.
        with list_bundles.make_context("list", [], parent=ctx) as listing:
            list_bundles.invoke(listing)


@bundles.command("list")
@output_option("table", "json", default="table")
@with_client
def list_bundles(client: Client, output: str) -> None:
    """List the registered bundles."""
    print_answer(client.bundles(), output, _bundles_table)


def _bundles_table(found: list[BundleSummary]) -> str:
    rows = [(b.bundle_id, b.version, b.fingerprint[:12], b.last_reloaded, b.path) for b in found]
    return table(("BUNDLE", "VERSION", "FINGERPRINT", "LAST RELOADED", "PATH"), rows)


@bundles.command("show")
@click.argument("bundle_id")
@output_option("text", "json", default="text")
@with_client
def show_bundle(client: Client, bundle_id: str, output: str) -> None:
    """Show a bundle: its current version, payload files and history."""
    print_answer(client.bundle(bundle_id), output, _bundle_text)


def _bundle_text(detail: BundleDetail) -> str:
    history = [(h.version, h.event, h.reason, h.timestamp, h.fingerprint[:12]) for h in detail.history]
    return (
        f"bundle:      {detail.bundle_id}\nversion:     {detail.version}\nfingerprint: {detail.fingerprint}\n"
        f"path:        {detail.path}\npayloads:    {', '.join(detail.payload_files) or '-'}\n\n"
        + table(("VERSION", "EVENT", "REASON", "TIME", "FINGERPRINT"), history)
    )


@bundles.command("reload")
@click.argument("bundle_id")
@output_option("text", "json", default="text")
@with_client
def reload_bundle(client: Client, bundle_id: str, output: str) -> None:
    """Re-read a bundle's directory on the server (a new directory of that id is registered)."""
    print_answer(client.reload_bundle(bundle_id), output, _reload_text)


def _reload_text(answer: Reloaded | ReloadUnchanged) -> str:
    return f"{answer.bundle_id}: {answer.message}"


@bundles.command("upload")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@output_option("text", "json", default="text")
@with_client
def upload_bundle(client: Client, path: Path, output: str) -> None:
    """Upload a bundle: a directory (zipped here) or a zip file."""
    try:
        answer = client.upload_bundle(path)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    print_answer(answer, output, _upload_text)


def _upload_text(answer: Uploaded) -> str:
    state = "registered a new version" if answer.changed else "unchanged"
    return f"{answer.bundle_id}: {state} ({answer.bundle_path})"


COMMANDS = (bundles,)
