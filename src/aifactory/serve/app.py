"""The HTTP API of the model server; handlers are thin: parse (wire types), call `Serving`, answer.

The two predict routes are the hot path: `PredictPath` answers them as plain ASGI in front of
FastAPI, validating the body with pydantic-core straight from bytes. Starlette's routing,
request object and FastAPI's middleware stack cost ~40 us a request on this machine, twice
the CNN's own share of a batch. They stay registered in FastAPI too (for the schema, and as
the reference the tests compare against). Everything else is ordinary FastAPI. Errors the
package raises on purpose get a status code and a message naming the field, never a
traceback; both paths build them with `problem`.
"""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import generate_latest
from pydantic import BaseModel, ValidationError

from aifactory.core.errors import AifactoryError, NotFound, SpecError
from aifactory.serve.feedback import Conflict
from aifactory.serve.metrics import CONTENT_TYPE, metrics_registry
from aifactory.serve.wire import FeedbackRequest, FeedbackResponse, Health, ModelInfo, PredictRequest

if TYPE_CHECKING:
    from aifactory.serve.server import Serving


def _json(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status_code=status, media_type="application/json")


def _error(status: int, detail: object) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _no_telemetry() -> dict[str, Any]:
    """FastAPI versions with built-in OpenTelemetry check providers and the environment on every
    request (~0.1 ms, as much as a batched prediction): off on the hot path."""
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    return {}


def create_app(serving: Serving) -> PredictPath:
    """The app for one `Serving` runtime; its lifespan starts and stops the runtime's tasks."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await serving.start()
        try:
            yield
        finally:
            await serving.close()

    app = FastAPI(title="aifactory serve", lifespan=lifespan, docs_url=None, redoc_url=None, **_no_telemetry())
    _add_error_handlers(app)

    async def predict(request: Request) -> Response:
        """POST /v1/models/{name}/predict and /api/predict: body PredictRequest -> PredictResponse."""
        name = request.path_params.get("name")
        if name is not None:
            serving.check_name(name)
        body = PredictRequest.model_validate_json(await request.body())
        return _json(await serving.predict(body))

    app.router.add_route("/v1/models/{name}/predict", predict, methods=["POST"])
    app.router.add_route("/api/predict", predict, methods=["POST"])
    routes_app = app

    @app.post("/v1/feedback", response_model=FeedbackResponse)
    def feedback(body: FeedbackRequest) -> Response:  # sync: runs on the thread pool, it waits for the log
        return _json(serving.add_feedback(body))

    @app.get("/v1/models", response_model=list[ModelInfo])
    async def models() -> list[ModelInfo]:
        return [serving.info()]

    @app.get("/v1/models/{name}", response_model=ModelInfo)
    async def model_info(name: str) -> Response:
        serving.check_name(name)
        return _json(serving.info())

    registry = metrics_registry(serving)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE)

    @app.get("/healthz", response_model=Health)
    @app.get("/v1/health", response_model=Health)
    async def health() -> Response:
        served = serving.served
        return _json(Health(status="ok", model=served.model, version=served.version))

    return PredictPath(routes_app, serving)


UNION_TAGS = ("list[float]", "dict[str,float]")


def problem(exc: Exception) -> tuple[int, object] | None:
    """(status, detail) of an error raised on purpose; None for a bug (which stays a 500)."""
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        # A row is a list or an object: pydantic names the branch of that union in the location; drop it.
        errors = [e for e in errors if "dict[" not in str(e["loc"])] or errors
        return 422, [
            {"loc": ["body", *(p for p in e["loc"] if p not in UNION_TAGS)], "msg": e["msg"], "type": e["type"]}
            for e in errors
        ]
    if isinstance(exc, SpecError):
        return 422, [{"loc": ["body", *_loc(exc.field)], "msg": exc.message, "type": "value_error"}]
    if isinstance(exc, NotFound):
        return 404, str(exc)
    if isinstance(exc, Conflict):
        return 409, str(exc)
    if isinstance(exc, AifactoryError):
        return 503, str(exc)
    return None


def _add_error_handlers(app: FastAPI) -> None:
    async def handle(_r: Request, exc: Exception) -> JSONResponse:
        status, detail = problem(exc) or (500, "internal error")
        return _error(status, detail)

    for kind in (ValidationError, SpecError, NotFound, Conflict, AifactoryError):
        app.add_exception_handler(kind, handle)


class PredictPath:
    """POST /v1/models/{name}/predict and /api/predict answered as plain ASGI; the rest goes to `app`."""

    PREFIX, SUFFIX = "/v1/models/", "/predict"

    def __init__(self, app: Any, serving: Serving) -> None:
        self.app = app
        self.serving = serving

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        name: str | None = None
        if path != "/api/predict":
            name = path[len(self.PREFIX) : -len(self.SUFFIX)]
            if not (path.startswith(self.PREFIX) and path.endswith(self.SUFFIX)) or not name or "/" in name:
                await self.app(scope, receive, send)
                return
        body = await _body(receive)
        try:
            if name is not None:
                self.serving.check_name(name)
            answer = await self.serving.predict(PredictRequest.model_validate_json(body))
            status, payload = 200, answer.__pydantic_serializer__.to_json(answer)
        except (ValidationError, AifactoryError) as exc:
            status, detail = problem(exc) or (500, "internal error")
            payload = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})


async def _body(receive: Any) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body  # the usual case: one message
    chunks = [body]
    while message.get("more_body"):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


def _loc(field: str) -> list[str | int]:
    """`inputs[3].bmi` -> ["inputs", 3, "bmi"]: the same shape as a validation error's location."""
    loc: list[str | int] = []
    for part in field.replace("[", ".").replace("]", "").split("."):
        if part:
            loc.append(int(part) if part.isdigit() else part)
    return loc
