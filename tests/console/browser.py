"""A real browser for the console's tests: Debian's Chromium driven by Playwright, and what a page did.

Playwright cannot download its own browser here, so it launches /usr/bin/chromium (`.ci/run`
installs it). Every page records its requests, responses, console messages and uncaught errors so a
test can show that nothing left the server's origin and nothing went wrong that it did not ask for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.runtime.processes import NodeProcess

TOKEN = "console-browser-token"
NODE = "console-node"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Chrome reports every 4xx/5xx answer to fetch as a console error with this text.
_REFUSED = re.compile(r"^Failed to load resource: the server responded with a status of (\d{3})")


@dataclass
class Recorder:
    """What one page asked for and said, for the checks every test ends with."""

    base: str
    shots: Path
    requests: list[str] = field(default_factory=list)
    refusals: list[tuple[int, str]] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> Page:
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("response", lambda r: r.status >= 400 and self.refusals.append((r.status, r.url)))
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        return page

    async def shot(self, page: Page, name: str) -> Path:
        path = self.shots / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    def assert_clean(self, allowed: set[int]) -> None:
        """Same-origin requests only, no script error, and no refusal but those the test caused."""
        foreign = [
            u for u in self.requests if not u.startswith(self.base + "/") and not u.startswith("data:")
        ]
        assert foreign == [], foreign
        assert self.page_errors == []
        assert {status for status, _ in self.refusals} <= allowed, self.refusals
        for text in self.console_errors:
            match = _REFUSED.match(text)
            assert match is not None and int(match.group(1)) in allowed, text


async def new_page(
    browser: Browser, recorder: Recorder, viewport: dict[str, int] = DESKTOP
) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    context.set_default_timeout(30_000)
    return context, recorder.attach(await context.new_page())


async def enter_token(page: Page, token: str) -> None:
    await page.get_by_label("Token", exact=True).fill(token)
    await page.get_by_role("button", name="Use this token").click()


async def texts(page: Page, selector: str, attribute: str) -> list[Any]:
    return await page.eval_on_selector_all(selector, f"els => els.map(e => e.getAttribute({attribute!r}))")


def job_id_of(page: Page) -> str:
    return unquote(page.url.split("#/jobs/", 1)[1])


def events_of(node: NodeProcess, job_id: str) -> list[dict[str, Any]]:
    status, listed = node.request("GET", f"/api/v1/jobs/{job_id}/events")
    assert status == 200, listed
    events: list[dict[str, Any]] = listed["data"]
    return events


async def open_console(page: Page, node: NodeProcess) -> None:
    await page.goto(node.url + "/")
    assert page.url == node.url + "/ui/"
    await expect(page.get_by_role("dialog")).to_contain_text("needs a bearer token")
    await enter_token(page, TOKEN)
    await expect(page.locator(f'.node[data-node="{NODE}"]')).to_contain_text("alive")


async def unlabelled(page: Page) -> list[str]:
    """Form controls on the page that no label names (an accessibility basic)."""
    return await page.eval_on_selector_all(
        "input, select, textarea, button",
        """els => els.filter(e => !(e.labels && e.labels.length) && !e.getAttribute("aria-label")
            && !(e.tagName === "BUTTON" && e.textContent.trim())).map(e => e.outerHTML.slice(0, 80))""",
    )
