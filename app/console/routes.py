"""The console's routes: `GET /` redirects to `/ui/`, `/ui/` serves the static files (SPEC C.4.1)."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from litestar import Response, get
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

STATIC_DIR = Path(__file__).resolve().parent / "static"
UI_PATH = "/ui"
_INLINE_SCRIPT = re.compile(r"<script type=\"importmap\">(.*?)</script>", re.DOTALL)


def content_security_policy(index_html: str) -> str:
    """A policy that lets the console load and connect to its own origin only (C.4.1).

    The one inline script is the import map; it is allowed by its hash, so no other inline script runs.
    """
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(m.encode('utf-8')).digest()).decode('ascii')}'"
        for m in _INLINE_SCRIPT.findall(index_html)
    )
    return (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


@get("/", include_in_schema=False, sync_to_thread=False)
def _root() -> Redirect:
    return Redirect(path=f"{UI_PATH}/", status_code=302)


def console_routes() -> list[ControllerRouterHandler]:
    """The redirect and the static files router, with headers that keep the page on its origin."""
    headers = {
        "content-security-policy": content_security_policy((STATIC_DIR / "index.html").read_text("utf-8")),
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cache-control": "no-cache",
    }

    def add_headers(response: Response[object]) -> Response[object]:
        response.headers.update(headers)
        return response

    static = create_static_files_router(
        path=UI_PATH, directories=[STATIC_DIR], html_mode=True, name="console", after_request=add_headers
    )
    return [_root, static]
