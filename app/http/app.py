"""The Litestar application factory: routes, dependencies, error envelope, authentication, OpenAPI."""

from __future__ import annotations

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

from app.config import Settings
from app.console.routes import console_routes
from app.http.auth import BearerGate
from app.http.bundles import BundlesController, upload_router
from app.http.context import Api
from app.http.docs import ReferencePage, assets_router
from app.http.errors import EXCEPTION_HANDLERS
from app.http.events import EventsController
from app.http.jobs import JobsController
from app.http.schemas import document_request_bodies, security_components
from app.http.system import SystemController
from app.ops.requests import RequestObserver
from app.service import Service
from app.store.database import Database

OPENAPI_PATH = "/api/v1/schema"


def create_app(settings: Settings, db: Database, service: Service, *, node_name: str) -> Litestar:
    """The HTTP API over an open database; the caller owns startup and shutdown of `db`."""
    api = Api(settings=settings, db=db, service=service, node_name=node_name)

    def provide_api() -> Api:
        return api

    components, security = security_components(settings.api_token is not None)
    app = Litestar(
        route_handlers=[
            SystemController,
            JobsController,
            EventsController,
            BundlesController,
            upload_router(settings.max_body_bytes),
            assets_router(),
            *(console_routes() if settings.console_enabled else []),
        ],
        dependencies={"api": Provide(provide_api, sync_to_thread=False, use_cache=True)},
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="MirrorNeuron",
            version="1.0.0",
            path=OPENAPI_PATH,
            render_plugins=[ReferencePage(), JsonRenderPlugin()],
            components=components,
            security=security,
        ),
        request_max_body_size=None,
        logging_config=None,
        debug=False,
    )
    document_request_bodies(app.openapi_schema)
    # Authentication comes before routing (SPEC §2.1): unknown paths and wrong methods get 401 too.
    app.asgi_handler = BearerGate(
        app.asgi_handler,
        settings.api_token,
        console=settings.console_enabled,
        read_token=settings.api_read_token,
        cors_origins=settings.cors_origins,
    )
    # Outermost: every answer, a 401 included, gets its request id, access line and metrics (C.5.8).
    app.asgi_handler = RequestObserver(app.asgi_handler)
    return app
