"""`mirror-neuron audit`: replay jobs over HTTP and compare with the API, or check cleanup records."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from app.cli.common import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, fail, server_options
from app.client import Client


def _print_job_audit(result: Any) -> None:
    verdict = "OK" if result.ok else "FAILED"
    click.echo(f"{verdict} {result.job_id}: {result.events} events, head {result.head or '-'}")
    for finding in result.findings:
        click.echo(f"  - {finding}")


def _audit_cleanups(database_url: str, archive_path: str | None) -> int:
    from app.audit import audit_cleanups
    from app.store.database import Database
    from app.store.database_url import DatabaseUrlError, async_url

    try:
        url = async_url(database_url)
    except DatabaseUrlError as exc:
        fail(f"--database-url {exc}", EXIT_USAGE)
    archive = None
    if archive_path:
        with open(archive_path, encoding="utf-8") as handle:
            archive = [json.loads(line) for line in handle if line.strip()]

    async def work() -> Any:
        db = Database(url)
        try:
            return await audit_cleanups(db, archive)
        finally:
            await db.dispose()

    result = asyncio.run(work())
    for finding in result.findings:
        click.echo(f"  - {finding}")
    verdict = "OK" if not result.findings else "FAILED"
    click.echo(
        f"{verdict}: {result.records} jobs_cleaned records, {result.checked_against_archive} checked against the archive"
    )
    return EXIT_OK if not result.findings else EXIT_FAILED


@click.command()
@click.argument("job_id", required=False)
@click.option("--all", "all_jobs", is_flag=True, help="Audit every job the API lists.")
@click.option("--cleanups", is_flag=True, help="Check the jobs_cleaned records instead (needs --database-url).")
@click.option("--database-url", help="With --cleanups: the database to read (an operator's check).")
@click.option("--archive", type=click.Path(exists=True, dir_okay=False), help="With --cleanups: NDJSON of archived job events to check against.")
@server_options
def audit(
    job_id: str | None, all_jobs: bool, cleanups: bool, database_url: str | None, archive: str | None,
    url: str, token: str | None,
) -> None:
    """Replay jobs' events over HTTP, recompute the hash chain, compare with the API (exit 1 on any difference)."""
    from app.audit import AuditError, all_job_ids, audit_job

    if cleanups:
        if not database_url:
            fail("--cleanups needs --database-url (it reads the system stream)", EXIT_USAGE)
        raise SystemExit(_audit_cleanups(str(database_url), archive))
    if not job_id and not all_jobs:
        fail("give a job id, --all or --cleanups", EXIT_USAGE)
    failed = audited = 0
    with Client(url, token=token) as client:
        try:
            for one in all_job_ids(client) if all_jobs else [str(job_id)]:
                result = audit_job(client, one)
                audited += 1
                failed += 0 if result.ok else 1
                _print_job_audit(result)
        except AuditError as exc:
            fail(str(exc), EXIT_UNREACHABLE if "cannot reach" in str(exc) else EXIT_FAILED)
    click.echo(f"audit: {audited - failed} of {audited} jobs replay to exactly what the API shows")
    raise SystemExit(EXIT_OK if failed == 0 else EXIT_FAILED)


COMMANDS = (audit,)
