"""The API reference page at /api/v1/schema/ (SPEC C.4.2, C.5.6): served from the package, no token
needed for the page and its assets (the document still needs one), and nothing from another origin."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from tests.api.conftest import BASE, ClientFactory

TOKEN = "reference-token-51f0"
REFERENCE = Path(__file__).resolve().parents[2] / "app" / "http" / "reference"


class Links(HTMLParser):
    """Every URL an HTML page makes the browser load (scripts, styles, icons, images, frames, forms)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "action", "data", "poster") and value is not None:
                self.urls.append(value)


@pytest.fixture
async def secured(make_client: ClientFactory) -> httpx.AsyncClient:
    return await make_client(Settings(api_token=TOKEN))


async def test_the_page_and_its_assets_load_without_a_token_from_this_origin(secured: httpx.AsyncClient) -> None:
    for path in (f"{BASE}/schema/", f"{BASE}/schema"):
        page = await secured.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    links = Links()
    links.feed(page.text)
    assert len(links.urls) >= 4
    for url in links.urls:
        if url.startswith("data:"):
            continue
        assert url.startswith("/") and not url.startswith("//"), url  # same origin, absolute path
        asset = await secured.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].split(";")[0] in ("text/css", "text/javascript", "application/javascript")
        if url.endswith(".css"):
            # Stylesheets may load fonts and images: only inline data, never another origin.
            assert not [u for u in re.findall(r"url\(([^)]*)\)", asset.text) if not u.strip("'\"").startswith("data:")]
    ours = (REFERENCE / "assets" / "reference.js").read_text()
    assert "validatorUrl: null" in ours  # Swagger UI's default badge would call validator.swagger.io
    assert not re.search(r"https?://", ours.replace("validator.swagger.io", ""))
    # The document itself still needs the token; the reference page sends the one the user gives it.
    assert (await secured.get(f"{BASE}/schema/openapi.json")).status_code == 401
    authorised = await secured.get(f"{BASE}/schema/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert authorised.status_code == 200 and authorised.json()["openapi"].startswith("3.1")


async def test_only_reads_of_the_page_are_public(secured: httpx.AsyncClient) -> None:
    assert (await secured.post(f"{BASE}/schema/", json={})).status_code == 401
    assert (await secured.get(f"{BASE}/schema/assets/nothing.js")).status_code == 404
    assert (await secured.get(f"{BASE}/schema/other")).status_code == 401


def test_vendored_files_carry_their_licence_and_version() -> None:
    assets = {path.name for path in (REFERENCE / "assets").iterdir()}
    assert {"swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-LICENSE", "swagger-ui-NOTICE"} <= assets
    assert "Apache License" in (REFERENCE / "assets" / "swagger-ui-LICENSE").read_text()
    version = (REFERENCE / "VERSIONS").read_text().split()
    assert version[0] == "swagger-ui-dist" and version[1] in (REFERENCE / "README.md").read_text()
