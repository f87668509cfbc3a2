"""The console in a real browser (issue 19): Debian's Chromium, driven by Playwright, against a real
`serve` process with a token, on SQLite and on Postgres.

Each test ends by checking that no request left the server's origin and that the page logged no
error besides the API refusals the test itself provoked; it saves a screenshot of every page it
visits under its temporary directory (`screenshots/`).
"""

from __future__ import annotations

import json
import re

from playwright.async_api import Browser, expect

from tests.console.browser import (
    NODE,
    PHONE,
    TOKEN,
    Recorder,
    enter_token,
    events_of,
    job_id_of,
    new_page,
    open_console,
    texts,
    unlabelled,
)
from tests.runtime.processes import ROOT, NodeProcess

# Seen by a MutationObserver from before the job page opens: every status each graph agent showed,
# and a flag that only survives if the document is never reloaded.
WATCH_STATUSES = """() => {
  window.__sameDocument = true;
  window.__seen = {};
  const record = () => document.querySelectorAll("g.agent").forEach((g) => {
    const list = (window.__seen[g.dataset.agentId] ||= []);
    if (!list.includes(g.dataset.status)) list.push(g.dataset.status);
  });
  new MutationObserver(record).observe(document.body,
    { subtree: true, childList: true, attributes: true, attributeFilter: ["data-status"] });
}"""


async def test_prime_sweep_from_the_run_page_to_a_live_graph_and_timeline(
    browser: Browser, node: NodeProcess, recorder: Recorder
) -> None:
    context, page = await new_page(browser, recorder)
    try:
        await open_console(page, node)
        card = page.locator(f'.node[data-node="{NODE}"]')
        await expect(card.locator('.pool[data-pool="default"]')).to_contain_text("0 / 4 in use")
        await recorder.shot(page, "overview")

        await page.get_by_role("link", name="Run", exact=True).click()
        await page.get_by_label("Bundle", exact=True).select_option("prime_sweep_4_workers")
        await recorder.shot(page, "run")
        await page.evaluate(WATCH_STATUSES)
        await page.get_by_role("button", name="Run bundle").click()
        await page.wait_for_url(re.compile(r"#/jobs/"))
        job_id = job_id_of(page)
        await expect(page.locator(".job-head .status")).to_have_text("completed", timeout=120_000)
        await expect(page.locator("#timeline-title")).to_contain_text("complete")

        events = events_of(node, job_id)
        manifest = events[0]["payload"]["manifest"]
        assert sorted(await texts(page, "g.agent", "data-agent-id")) == sorted(
            n["node_id"] for n in manifest["nodes"]
        )
        drawn = await page.eval_on_selector_all(
            "g.edge", "els => els.map(e => [e.dataset.from, e.dataset.to, e.dataset.type])"
        )
        assert sorted(map(tuple, drawn)) == sorted(
            (e["from_node"], e["to_node"], e["message_type"]) for e in manifest["edges"]
        )
        executors = [n["node_id"] for n in manifest["nodes"] if n["agent_type"] == "executor"]
        for agent in executors:
            await expect(page.locator(f'g.agent[data-agent-id="{agent}"]')).to_have_attribute(
                "data-status", "completed"
            )
        assert await page.evaluate("window.__sameDocument") is True  # no reload happened
        seen = await page.evaluate("window.__seen")
        for agent in executors:  # each executor was drawn in another status first, then completed
            assert seen[agent][-1] == "completed" and len(seen[agent]) > 1, (agent, seen[agent])

        rows = await page.eval_on_selector_all(
            "li.event", "els => els.map(e => [Number(e.dataset.sequence), e.dataset.type])"
        )
        assert rows == [[e["sequence"], e["type"]] for e in events]
        first = page.locator('li.event[data-sequence="1"]')
        await first.locator("summary").click()
        await expect(first.locator("pre.json")).to_contain_text('"graph_id": "prime_sweep_4_workers"')
        worker = page.locator(".sandboxes > li", has_text="prime_worker_0001")
        await worker.locator("summary", has_text="stdout").click()
        await expect(worker.locator("pre.output")).to_contain_text('"worker_id": "prime_worker_0001"')
        await expect(page.locator(".result")).to_contain_text('"prime_count": 32')
        assert await page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0

        await recorder.shot(page, "job")
        recorder.assert_clean({401})
    finally:
        await context.close()


async def test_pause_message_resume_cancel_from_the_buttons(
    browser: Browser, node: NodeProcess, recorder: Recorder
) -> None:
    manifest = json.loads((ROOT / "examples" / "manifests" / "pause_resume.json").read_text())
    manifest["nodes"][1]["config"] = {"complete_after": 10}  # SPEC §13.5 flow B: never completes
    context, page = await new_page(browser, recorder)
    try:
        await open_console(page, node)
        await page.get_by_role("link", name="Run", exact=True).click()
        await page.get_by_label("Manifest (JSON)").fill(json.dumps(manifest, indent=2))
        await page.evaluate(WATCH_STATUSES)
        await page.get_by_role("button", name="Submit manifest").click()
        await page.wait_for_url(re.compile(r"#/jobs/"))
        job_id = job_id_of(page)
        status = page.locator(".job-head .status")
        sink = page.locator('tr[data-agent-id="sink"]')
        outcome = page.locator(".controls .outcome")
        await expect(status).to_have_text("running")
        await expect(page.locator('tr[data-agent-id="root"] [data-processed]')).to_have_text("1")

        await page.get_by_role("button", name="Pause").click()
        await expect(status).to_have_text("paused")
        await expect(outcome).to_contain_text('"status":"paused"')
        await expect(page.locator('g.agent[data-agent-id="sink"]')).to_have_attribute("data-status", "paused")

        await page.get_by_label("Send to agent").select_option("sink")
        message = {"type": "manual_result", "payload": {"text": "approved while paused"}}
        await page.get_by_label("Message (JSON)").fill(json.dumps(message))
        await page.get_by_role("button", name="Send message").click()
        await expect(outcome).to_contain_text('"message_id"')
        await expect(sink.locator("[data-mailbox]")).to_have_text("1")
        await expect(page.locator('g.agent[data-agent-id="sink"] [data-counts]')).to_have_text(
            "processed 0 · mailbox 1"
        )
        await expect(status).to_have_text("paused")
        await recorder.shot(page, "job-paused")
        assert await unlabelled(page) == []

        await page.get_by_role("button", name="Resume").click()
        await expect(status).to_have_text("running")
        await expect(sink.locator("[data-processed]")).to_have_text("1")
        await expect(sink.locator("[data-mailbox]")).to_have_text("0")

        await page.get_by_role("button", name="Cancel").click()
        await expect(status).to_have_text("cancelled")
        await expect(page.get_by_role("button", name="Cancel")).to_be_disabled()
        await expect(page.locator(".result")).to_contain_text("cancelled by operator")
        await expect(page.locator("#timeline-title")).to_contain_text("complete")

        await page.get_by_role("button", name="Send message").click()
        refusal = page.locator(".controls .error")
        await expect(refusal).to_contain_text(f"job {job_id} is already in a terminal state (cancelled)")
        await expect(refusal).to_contain_text("409")
        await recorder.shot(page, "job-cancelled")

        assert await page.evaluate("window.__sameDocument") is True
        types = await texts(page, "li.event", "data-type")
        assert types == [e["type"] for e in events_of(node, job_id)]
        timeline = page.get_by_role("region", name=re.compile("^Events"))
        await timeline.get_by_label("Agent").select_option("sink")
        sink_events = [e for e in events_of(node, job_id) if e["agent_id"] == "sink"]
        await expect(page.locator("li.event")).to_have_count(len(sink_events))
        assert set(await texts(page, "li.event", "data-agent-id")) == {"sink"}
        await timeline.get_by_label("Agent").select_option("")
        await timeline.get_by_label("Type").select_option("job_paused")
        await expect(page.locator("li.event")).to_have_count(1)
        await timeline.get_by_label("Type").select_option("")
        controls = [t for t in types if t in ("job_paused", "job_resumed", "job_cancelled")]
        assert controls == ["job_paused", "job_resumed", "job_cancelled"]
        assert (
            types.index("job_paused")
            < types.index("message_delivered", types.index("job_paused"))
            < types.index("job_resumed")
        )
        recorder.assert_clean({401, 409})
    finally:
        await context.close()


async def test_token_prompt_validation_errors_jobs_bundles_and_phone_width(
    browser: Browser, node: NodeProcess, recorder: Recorder
) -> None:
    research = json.loads((ROOT / "examples" / "manifests" / "research_flow.json").read_text())
    for _ in range(25):  # with the one submitted below: one more than a page of the jobs table
        assert node.request("POST", "/api/v1/jobs", research)[0] == 201
    context, page = await new_page(browser, recorder)
    try:
        await page.goto(node.url + "/ui/")
        await enter_token(page, "not-the-token")
        await expect(page.get_by_role("dialog")).to_contain_text("The server refused the token")
        await enter_token(page, TOKEN)
        await expect(page.locator(f'.node[data-node="{NODE}"]')).to_contain_text("alive")
        await expect(page.locator("#counts-title")).to_contain_text("(25 in all)")
        assert node.request("POST", "/api/v1/jobs", research)[0] == 201  # the overview follows the feed
        await expect(page.locator("#counts-title")).to_contain_text("(26 in all)")
        await expect(page.locator('[data-count="completed"] .count')).to_have_text("26")

        bad = {"graph": {}, "agents": []}
        status, refused = node.request("POST", "/api/v1/jobs", bad)
        assert status == 400 and len(refused["errors"]) == 4
        await page.get_by_role("link", name="Run", exact=True).click()
        await page.get_by_label("Manifest (JSON)").fill(json.dumps(bad))
        await page.get_by_role("button", name="Submit manifest").click()
        shown = page.locator("#run-manifest-errors")
        await expect(shown).to_contain_text("Manifest validation failed")
        await expect(shown.locator(".validation-errors li")).to_have_text(refused["errors"])
        await recorder.shot(page, "run-invalid-manifest")
        by_bundle = page.get_by_role("region", name="A registered bundle")
        await by_bundle.get_by_label("Initial inputs (JSON, optional)").fill('{"dispatcher": [')
        await by_bundle.get_by_role("button", name="Run bundle").click()
        await expect(by_bundle.get_by_role("alert")).to_contain_text("invalid JSON")
        assert await unlabelled(page) == []

        await page.get_by_role("link", name="Jobs", exact=True).click()
        rows = page.locator("table.jobs tbody tr")
        await expect(rows).to_have_count(25)
        await page.get_by_role("button", name="Older →").click()
        await expect(rows).to_have_count(1)
        await expect(page.get_by_role("button", name="Older →")).to_be_disabled()
        await page.get_by_role("button", name="← Newer").click()
        await expect(rows).to_have_count(25)
        status, created = node.request("POST", "/api/v1/jobs", research)  # appears without a reload
        assert status == 201
        await expect(page.locator(f'tr[data-job-id="{created["job_id"]}"]')).to_have_count(1)
        await recorder.shot(page, "jobs")
        await page.get_by_label("failed").check()
        await expect(page.get_by_text("No jobs.")).to_be_visible()
        await page.get_by_label("failed").uncheck()
        await page.get_by_label("Graph id").fill("no_such_graph")
        await page.get_by_role("button", name="Filter").click()
        await expect(page.get_by_text("No jobs.")).to_be_visible()

        await page.get_by_role("link", name="Bundles", exact=True).click()
        bundle = page.locator('[data-bundle-id="prime_sweep_4_workers"]')
        await bundle.get_by_role("button", name="Show versions").click()
        await expect(bundle.locator("table.history tbody tr")).to_contain_text("bundle_registered")
        await bundle.get_by_role("button", name="Reload from disk").click()
        await expect(bundle).to_contain_text("No bundle changes detected")
        await recorder.shot(page, "bundles")

        await page.set_viewport_size(PHONE)
        for name, route, shown in (
            ("phone-overview", "#/", ".node"),
            ("phone-job", f"#/jobs/{created['job_id']}", "[data-audit]"),
            ("phone-run", "#/run", "#run-manifest"),
        ):
            await page.goto(f"{node.url}/ui/{route}")
            await expect(page.locator(shown)).to_be_visible()
            overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, (name, overflow)
            await recorder.shot(page, name)
        recorder.assert_clean({400, 401})
    finally:
        await context.close()
