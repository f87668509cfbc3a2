"""The interactive API reference at /api/v1/schema/ (SPEC C.4.2): Swagger UI from files the package
ships (`reference/`), so the page works offline and loads nothing from another origin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Request, Router
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.static_files import create_static_files_router

REFERENCE_DIR = Path(__file__).with_name("reference")
ASSETS_PATH = "/api/v1/schema/assets"


class ReferencePage(OpenAPIRenderPlugin):
    """Serves `reference/index.html` at the schema root; the page reads `openapi.json` itself."""

    def __init__(self) -> None:
        super().__init__(path="/")
        self.page = (REFERENCE_DIR / "index.html").read_bytes()

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        """The page, the same for every request."""
        return self.page


def assets_router() -> Router:
    """The page's scripts and styles (vendored Swagger UI and ours)."""
    return create_static_files_router(
        path=ASSETS_PATH, directories=[REFERENCE_DIR / "assets"], include_in_schema=False, send_as_attachment=False
    )
