"""The job page's audit badge in a real browser: the JavaScript verifier over the whole chain, then a
tampered event (the immutability trigger lifted as the owner would) named by its sequence."""

from __future__ import annotations

import json

from playwright.async_api import Browser, expect

from app.store.database import Database
from tests.console.browser import Recorder, events_of, new_page, open_console
from tests.e2e.test_audit import _tamper
from tests.runtime.processes import ROOT, NodeProcess, wait_for


async def test_audit_badge_verifies_the_chain_and_names_a_tampered_sequence(
    browser: Browser, node: NodeProcess, recorder: Recorder, db: Database, backend: str
) -> None:
    research = json.loads((ROOT / "examples" / "manifests" / "research_flow.json").read_text())
    status, created = node.request("POST", "/api/v1/jobs", research)
    assert status == 201
    job_id = created["job_id"]
    wait_for(
        lambda: node.request("GET", f"/api/v1/jobs/{job_id}")[1]["job"]["status"] == "completed", 60, "done"
    )
    events = events_of(node, job_id)
    context, page = await new_page(browser, recorder)
    try:
        await open_console(page, node)
        await page.goto(f"{node.url}/ui/#/jobs/{job_id}")
        badge = page.locator("[data-audit]")
        await expect(badge).to_have_attribute("data-audit", "ok")
        await expect(badge).to_contain_text(
            f"chain verified: {len(events)} events, head {events[-1]['hash'][:12]}"
        )
        await recorder.shot(page, "job-audit-verified")

        await _tamper(db, backend, job_id, 3)
        await page.reload()
        await expect(badge).to_have_attribute("data-audit", "bad")
        await expect(badge).to_have_attribute("data-bad-sequence", "3")
        await expect(badge).to_contain_text("sequence 3")
        await expect(page.locator("li.event.bad")).to_have_attribute("data-sequence", "3")
        await recorder.shot(page, "job-audit-tampered")
        recorder.assert_clean({401})
    finally:
        await context.close()
