"""The console's HTTP side (SPEC C.4.1, C.5.6): redirect, static files without a token, the switch, vendoring."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest

from app.config import Settings
from app.console import vendor
from app.console.routes import STATIC_DIR
from tests.hardening.server import served

TOKEN = "console-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def base(database_url: str) -> Iterator[str]:
    with served(Settings(database_url=database_url, api_token=TOKEN)) as url:
        yield url


@pytest.fixture
def base_without_console(database_url: str) -> Iterator[str]:
    settings = replace(Settings(database_url=database_url, api_token=TOKEN), console_enabled=False)
    with served(settings) as url:
        yield url


def test_root_redirects_to_the_console_without_a_token(base: str) -> None:
    answer = httpx.get(base + "/")
    assert answer.status_code == 302
    assert answer.headers["location"] == "/ui/"


def test_static_files_need_no_token_and_keep_the_page_on_its_origin(base: str) -> None:
    index = httpx.get(base + "/ui/")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    policy = index.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    for src in re.findall(r'(?:src|href)="([^"#]+)"', index.text):
        if not src.startswith("data:"):
            asset = httpx.get(f"{base}/ui/{src}")
            assert asset.status_code == 200, src
    module = httpx.get(base + "/ui/js/main.js")
    assert module.status_code == 200
    assert "javascript" in module.headers["content-type"]


def test_only_get_of_console_paths_is_exempt(base: str) -> None:
    assert httpx.post(base + "/ui/").status_code == 401
    assert httpx.get(base + "/api/v1/jobs").status_code == 401
    assert httpx.get(base + "/uix").status_code == 401
    assert httpx.get(base + "/ui/no-such-file.js").status_code == 404
    assert httpx.get(base + "/ui/%2e%2e/routes.py").status_code == 404
    assert httpx.get(base + "/api/v1/jobs", headers=AUTH).status_code == 200


def test_console_can_be_switched_off(base_without_console: str) -> None:
    assert httpx.get(base_without_console + "/").status_code == 401
    assert httpx.get(base_without_console + "/ui/").status_code == 401
    assert httpx.get(base_without_console + "/ui/", headers=AUTH).status_code == 404
    assert httpx.get(base_without_console + "/", headers=AUTH).status_code == 404


def test_console_switch_is_read_from_the_environment() -> None:
    assert Settings.from_env({"MIRROR_NEURON_CONSOLE": "0"}).console_enabled is False
    assert Settings.from_env({}).console_enabled is True


def test_vendored_files_match_their_record_and_carry_licences() -> None:
    record = vendor.load()
    assert vendor.mismatches(record) == []
    for name, pin in record.items():
        assert any(target.endswith("LICENSE") for target in pin["files"].values()), name
    imports = re.search(
        r'<script type="importmap">(.*?)</script>', (STATIC_DIR / "index.html").read_text(), re.S
    )
    assert imports is not None
    vendored = {target for pin in record.values() for target in pin["files"].values()}
    for path in re.findall(r'"\./vendor/([^"]+)"', imports.group(1)):
        assert path in vendored, path
