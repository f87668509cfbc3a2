"""The API reference page in a real browser (Debian's Chromium through Playwright): it asks for the
token, shows every operation of the document, and no request leaves the server's origin."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.config import Settings
from tests.hardening.server import served

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
TOKEN = "reference-browser-token"

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="needs Chromium from Debian's packages at /usr/bin/chromium"
)


def test_the_reference_page_loads_offline_and_lists_every_operation(database_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with served(Settings(database_url=database_url, api_token=TOKEN)) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            requests: list[str] = []
            problems: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(base + "/api/v1/schema/")
            page.fill("#token-value", TOKEN)  # the document needs the token; the page asks once
            page.click("#token button")
            page.wait_for_selector(".opblock", timeout=60_000)
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            page.screenshot(path=str(tmp_path / "reference.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert {"/api/v1/jobs", "/api/v1/jobs/{job_id}/messages", "/api/v1/events"} <= {p.replace("\u200b", "") for p in paths}
    assert len(paths) >= 17
    assert requests and all(url.startswith(base + "/") or url.startswith("data:") for url in requests), requests
    assert base + "/api/v1/schema/openapi.json" in requests
