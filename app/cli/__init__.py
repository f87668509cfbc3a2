"""The `mirror-neuron` command line on click: the server commands (in `app.__main__`) and every API
operation through `app.client`, one module per group of commands.

Layout: this module holds the `cli` group, `completion` and the registration of each module's
`COMMANDS`; `common.py` what every client command shares (`--url`/`--token`, `with_client` that opens
one `app.client.Client` and turns its `ApiError` into an exit code, `--output` formats, tables);
`jobs.py` submit, wait, jobs, show, events, feed and the controls; `bundles.py` the bundle group;
`system.py` nodes and summary; `audit.py` the audit, whose replay is `app.audit` over the same client
(its `--cleanups` check alone reads the database, through `app.store`). No command speaks HTTP itself:
`app.client` is the one HTTP client of the CLI and the audit.

click because it is already installed with Litestar, gives every option its help text and environment
variable (`show_envvar`), shell completion and `--version` without code of ours, and keeps stdout plain
for scripts; rich-click would only restyle the help, and typer adds a layer over the same click.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from app.cli import audit, bundles, jobs, system

COMPLETE_VARIABLE = "_MIRROR_NEURON_COMPLETE"


def installed_version() -> str:
    """The installed distribution's version (a checkout that was never installed says so)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mirror-neuron")
    except PackageNotFoundError:
        return "unknown (not installed)"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(installed_version(), prog_name="mirror-neuron", message="%(prog)s %(version)s")
def cli() -> None:
    """MirrorNeuron: event-sourced runtime for multi-agent job graphs.

    Client commands talk to a server at --url ($MIRROR_NEURON_URL, default
    http://127.0.0.1:$MIRROR_NEURON_API_PORT) with --token ($MIRROR_NEURON_API_TOKEN).

    Exit codes: 0 done (for --wait: completed); 1 the server refused the request, the job failed or
    was cancelled, or a check found differences; 2 usage error or --wait timed out; 3 the server
    could not be reached.
    """


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: `eval "$(mirror-neuron completion bash)"`."""
    complete = get_completion_class(shell)
    assert complete is not None
    click.echo(complete(cli, {}, "mirror-neuron", COMPLETE_VARIABLE).source())


for module in (jobs, bundles, system, audit):
    for command in module.COMMANDS:
        cli.add_command(command)
