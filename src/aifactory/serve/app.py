"""The HTTP API of the model server; handlers are thin: parse (wire types), call `Serving`, answer.

The two predict routes are plain Starlette routes that validate the body with pydantic-core
straight from bytes: they are the hot path, and FastAPI's dependency solving and response
re-validation would cost more than the model itself for a one-row request. Everything else
is ordinary FastAPI. Errors the package raises on purpose get a status code and a message
naming the field, never a traceback.
"""

from __future__ import annotations

import contextlib
import inspect
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


def create_app(serving: Serving) -> FastAPI:
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

    return app


UNION_TAGS = ("list[float]", "dict[str,float]")


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ValidationError)
    async def _invalid(_r: Request, exc: ValidationError) -> JSONResponse:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        # A row is a list or an object: pydantic names the branch of that union in the location; drop it.
        errors = [e for e in errors if "dict[" not in str(e["loc"])] or errors
        return _error(
            422,
            [
                {"loc": ["body", *(p for p in e["loc"] if p not in UNION_TAGS)], "msg": e["msg"], "type": e["type"]}
                for e in errors
            ],
        )

    @app.exception_handler(SpecError)
    async def _spec(_r: Request, exc: SpecError) -> JSONResponse:
        return _error(422, [{"loc": ["body", *_loc(exc.field)], "msg": exc.message, "type": "value_error"}])

    @app.exception_handler(NotFound)
    async def _not_found(_r: Request, exc: NotFound) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(Conflict)
    async def _conflict(_r: Request, exc: Conflict) -> JSONResponse:
        return _error(409, str(exc))

    @app.exception_handler(AifactoryError)
    async def _other(_r: Request, exc: AifactoryError) -> JSONResponse:
        return _error(503, str(exc))


def _loc(field: str) -> list[str | int]:
    """`inputs[3].bmi` -> ["inputs", 3, "bmi"]: the same shape as a validation error's location."""
    loc: list[str | int] = []
    for part in field.replace("[", ".").replace("]", "").split("."):
        if part:
            loc.append(int(part) if part.isdigit() else part)
    return loc
