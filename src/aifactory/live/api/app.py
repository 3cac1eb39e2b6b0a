"""`create_app(service)`: the FastAPI app over a running FactoryService.

Handlers are thin; this module maps the package's errors to status codes
(SpecError 422 naming the field, NotFound 404, InvalidTransition 409, bad token
401, outside one's projects 403, body over 1 MiB 413) and never lets a
traceback out: anything unexpected is logged here and answered with a 500.
"""

from __future__ import annotations

import logging
from importlib.metadata import version
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response

from aifactory.core.errors import AifactoryError, InvalidTransition, NotFound, SpecError
from aifactory.live.api.auth import Forbidden, Unauthorized
from aifactory.live.api.deps import CallerDep, ServiceDep
from aifactory.live.api.limits import BodyLimit
from aifactory.live.api.metrics import CONTENT_TYPE, render
from aifactory.live.api.routes import events, jobs, nodes, projects, tokens, usage
from aifactory.live.service import FactoryService
from aifactory.live.wire import ErrorOut, HealthOut

log = logging.getLogger("aifactory.api")
__version__ = version("aifactory")

ERRORS = {401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 413: ErrorOut, 422: ErrorOut}


def create_app(service: FactoryService) -> FastAPI:
    app = FastAPI(
        title="aifactory",
        version=__version__,
        summary="The floor of an AI factory: submit jobs, watch the queue, see who holds which GPU.",
        responses={code: {"model": model} for code, model in ERRORS.items()},
        docs_url=None,  # served below from the package's own copy of Swagger UI: no CDN, works offline
        redoc_url=None,
    )
    app.state.service = service
    app.state.callers = {}
    app.add_middleware(BodyLimit)
    _add_error_handlers(app)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="aifactory API",
            swagger_js_url="/static/swagger-ui-5.35.0-bundle.js",
            swagger_css_url="/static/swagger-ui-5.35.0.css",
            swagger_favicon_url="/favicon.ico",
        )

    @app.get("/api/health", response_model=HealthOut, tags=["health"])
    async def health() -> HealthOut:
        """Liveness; the only route without a token, so it says nothing about jobs or users."""
        return HealthOut(version=__version__)

    @app.get("/metrics", tags=["metrics"], response_class=Response)
    async def metrics(service: ServiceDep, caller: CallerDep) -> Response:
        """The floor for Prometheus (text format): scheduler and GPU metrics, a tenant's own only."""
        return Response(render(service, caller), media_type=CONTENT_TYPE)

    for module in (events, jobs, nodes, projects, tokens, usage):
        app.include_router(module.router, prefix="/api")
    from aifactory.live.web.pages import install  # Jinja2 is loaded with the app, not with the CLI

    install(app)
    return app


def _detail(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SpecError)
    async def spec_error(_: Request, exc: SpecError) -> JSONResponse:
        item = {"loc": ["body", exc.field], "msg": exc.message, "type": "spec_error"}
        return JSONResponse({"detail": [item]}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Keep loc, msg and type; drop `input`/`ctx`, which may echo a large or secret body back.
        items = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": items}, status_code=422)

    statuses: list[tuple[type[Exception], int]] = [
        (Unauthorized, 401),
        (Forbidden, 403),
        (NotFound, 404),
        (InvalidTransition, 409),
        (AifactoryError, 400),
    ]
    for kind, status in statuses:
        app.add_exception_handler(kind, _status_handler(status))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _detail(500, f"internal error ({type(exc).__name__}); see the server log")


def _status_handler(status: int) -> Any:
    async def handler(_: Request, exc: Exception) -> JSONResponse:
        return _detail(status, str(exc))

    return handler
