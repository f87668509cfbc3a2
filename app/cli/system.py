"""System commands: nodes and the summary."""

from __future__ import annotations

import click

from app.cli.common import output_option, print_json, table, with_client
from app.client import Client


@click.command()
@output_option("table", "json", default="table")
@with_client
def nodes(client: Client, output: str) -> None:
    """List the nodes, live and lost, with their executor pools."""
    found = client.nodes()
    if output == "json":
        print_json(found)
        return
    rows = [
        (
            n.name, n.status, "yes" if n.is_self else "", n.active_jobs, n.last_heartbeat_at,
            " ".join(f"{pool}={s.in_use}/{s.capacity}" for pool, s in sorted(n.executor_pools.items())),
        )
        for n in found
    ]
    click.echo(table(("NODE", "STATUS", "SELF", "JOBS", "HEARTBEAT", "POOLS IN USE"), rows))


@click.command()
@output_option("text", "json", default="text")
@with_client
def summary(client: Client, output: str) -> None:
    """Job counts by status and the nodes."""
    found = client.summary()
    if output == "json":
        print_json(found)
        return
    click.echo(table(("STATUS", "JOBS"), sorted(found.job_counts.items())))
    click.echo(f"total: {found.jobs_total}; nodes: {', '.join(f'{n.name} ({n.status})' for n in found.nodes) or '-'}")


COMMANDS = (nodes, summary)
