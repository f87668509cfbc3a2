"""System commands: nodes and the summary."""

from __future__ import annotations

import click

from app.cli.common import output_option, print_answer, table, with_client
from app.client import Client
from app.wire import NodeSummary, SystemSummary


@click.command()
@output_option("table", "json", default="table")
@with_client
def nodes(client: Client, output: str) -> None:
    """List the nodes, live and lost, with their executor pools."""
    print_answer(client.nodes(), output, _nodes_table)


def _nodes_table(found: list[NodeSummary]) -> str:
    rows = [
        (
            n.name, n.status, "yes" if n.is_self else "", n.active_jobs, n.last_heartbeat_at,
            " ".join(f"{pool}={s.in_use}/{s.capacity}" for pool, s in sorted(n.executor_pools.items())),
        )
        for n in found
    ]
    return table(("NODE", "STATUS", "SELF", "JOBS", "HEARTBEAT", "POOLS IN USE"), rows)


@click.command()
@output_option("text", "json", default="text")
@with_client
def summary(client: Client, output: str) -> None:
    """Job counts by status and the nodes."""
    print_answer(client.summary(), output, _summary_text)


def _summary_text(found: SystemSummary) -> str:
    nodes = ", ".join(f"{n.name} ({n.status})" for n in found.nodes) or "-"
    return table(("STATUS", "JOBS"), sorted(found.job_counts.items())) + f"\ntotal: {found.jobs_total}; nodes: {nodes}"


COMMANDS = (nodes, summary)
