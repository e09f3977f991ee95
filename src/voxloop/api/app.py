"""Application factory."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from voxloop import __version__
from voxloop.api.service import get_principal, require_page_login
from voxloop.config import Settings
from voxloop.errors import (
    ConfigError,
    ConflictError,
    InvalidTransitionError,
    NotFoundError,
    PermissionDeniedError,
    UnusableInputError,
    VoxloopError,
)
from voxloop.pipeline.service import StageRunner
from voxloop.store.service import make_engine, make_sessionmaker, migrate

#: Seconds a stopping server waits for a running post-ingest pass.
SHUTDOWN_WAIT_SECONDS = 120.0

_STATUS = {
    NotFoundError: 404,
    ConflictError: 409,
    InvalidTransitionError: 409,
    PermissionDeniedError: 403,
    UnusableInputError: 422,
}

Loc = list[str | int]


class ErrorBody(BaseModel):
    """A refused request: what was wrong, the error class and the field it concerns."""

    detail: str
    error: str | None = None
    loc: Loc = Field(
        min_length=1, description="Where the refused value sits, e.g. ['path', 'alert_id']."
    )


class FieldError(BaseModel):
    """One refused field of a request (FastAPI's validation error item)."""

    loc: Loc
    msg: str
    type: str


class FieldErrors(BaseModel):
    """Request validation failed; one item per refused field."""

    detail: list[FieldError]


#: Error responses every API route may give, documented once for all of them.
API_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The request is inconsistent"},
    401: {"model": ErrorBody, "description": "No valid credentials"},
    403: {"model": ErrorBody, "description": "The role or region scope does not allow it"},
    404: {"model": ErrorBody, "description": "No such record"},
    409: {"model": ErrorBody, "description": "Conflicts with the record's current state"},
    413: {"model": FieldErrors | ErrorBody, "description": "The request is too large"},
    422: {"model": FieldErrors | ErrorBody, "description": "A field is invalid"},
}


_MAX_INT = 2**63 - 1


def _oversized_param(request: Request) -> Loc | None:
    """Return the path or query parameter holding an integer beyond 64 bits, if one does."""
    for where, params in (("path", request.path_params), ("query", request.query_params)):
        for name, value in params.items():
            try:
                number = int(str(value))
            except ValueError:
                continue
            if not -_MAX_INT - 1 <= number <= _MAX_INT:
                return [where, name]
    return None


def _infer_loc(request: Request, message: str, status: int) -> Loc:
    """Return the field a refusal without an explicit ``loc`` most likely concerns."""
    if status == 401:
        return ["header", "authorization"]
    path = list(request.path_params)
    query = list(request.query_params)
    # A message that names a parameter names the field.
    for where, names in (("path", path), ("query", query)):
        for name in names:
            if name in message:
                return [where, name]
    if path:
        return ["path", path[0]]
    if status == 403:
        return ["header", "authorization"]
    if request.method in ("POST", "PUT", "PATCH"):
        return ["body"]
    if query:
        return ["query", query[0]]
    return ["path"]


#: Said when dev mode (``env = "dev"``, no user yet) would answer a non-loopback caller.
DEV_MODE_REFUSAL = (
    "dev mode (env = 'dev' and no user yet) answers every request as an administrator, so it "
    "is served on loopback only (127.0.0.1, ::1 or localhost); create a user first "
    "('voxloop user add NAME --role admin --password ...') or set VOXLOOP_ENV=prod"
)

#: Client names of in-process transports (Starlette's TestClient): no network peer at all.
_IN_PROCESS_CLIENTS = frozenset({"testclient"})


def is_loopback_host(host: str | None) -> bool:
    """Return whether ``host`` (a bind address or a peer address) is on the loopback interface."""
    if not host:
        return False
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def dev_mode_open(*, settings: Settings, session: Session) -> bool:
    """Return whether requests without credentials would act as the built-in dev admin."""
    from voxloop.act.access import has_users

    return settings.env == "dev" and not has_users(session=session)


def check_bind(app: FastAPI, *, host: str) -> None:
    """Refuse (``ConfigError``) to serve dev mode's open door on a non-loopback address."""
    if is_loopback_host(host):
        return
    with app.state.sessionmaker() as session:
        if dev_mode_open(settings=app.state.settings, session=session):
            raise ConfigError(f"refusing to serve on {host}: {DEV_MODE_REFUSAL}")


class DevModeLoopbackOnly:
    """Refuse non-loopback callers while dev mode would answer them as an administrator.

    Defence in depth behind ``check_bind``: a server started some other way (``uvicorn
    voxloop...``, a container publishing the port, a reverse proxy whose forwarded client
    address uvicorn trusts) still never grants the dev admin to a caller off this machine.
    """

    def __init__(
        self, app: ASGIApp, *, settings: Settings, sessions: sessionmaker[Session]
    ) -> None:
        self.app = app
        self.settings = settings
        self.sessions = sessions
        # Dev mode ends for good with the first user, so the store is asked only until then.
        self._closed = settings.env != "dev"

    def _still_open(self) -> bool:
        with self.sessions() as session:
            is_open = dev_mode_open(settings=self.settings, session=session)
        self._closed = not is_open
        return is_open

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer 403 to a remote caller while dev mode is open."""
        if (
            self._closed
            or scope["type"] not in ("http", "websocket")
            or scope.get("path") == "/healthz"
            or _local_caller(scope)
            or not await asyncio.to_thread(self._still_open)
        ):
            await self.app(scope, receive, send)
            return
        body: dict[str, Any] = {
            "detail": DEV_MODE_REFUSAL,
            "error": "DevModeRemoteCaller",
            "loc": ["header", "authorization"],
        }
        await JSONResponse(body, status_code=403)(scope, receive, send)


def _local_caller(scope: Scope) -> bool:
    client = scope.get("client")
    if client is None:
        # A Unix socket (or a server that does not know its peer): local by construction.
        return True
    host = str(client[0])
    return host in _IN_PROCESS_CLIENTS or is_loopback_host(host)


def create_app(settings: Settings, *, run_migrations: bool = True) -> FastAPI:
    """Create the voxloop web application (API under /api/v1, dashboard under /)."""
    from pathlib import Path

    from voxloop.act import views as act_views
    from voxloop.analyze import views as analyze_views
    from voxloop.assist import qa_views, summary_views
    from voxloop.assist import views as assist_views
    from voxloop.detect import views as detect_views
    from voxloop.ingest import views as ingest_views
    from voxloop.understand import views as understand_views
    from voxloop.web import report_views
    from voxloop.web import views as web_views

    if run_migrations:
        migrate(settings)
    engine = make_engine(settings)
    stages = StageRunner(settings=settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        # Let a running post-ingest pass finish (its outputs are crash-safe either way).
        await asyncio.to_thread(stages.wait_idle, SHUTDOWN_WAIT_SECONDS)

    app = FastAPI(
        title="voxloop",
        version=__version__,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.stages = stages
    app.state.sessionmaker = make_sessionmaker(engine)
    app.add_middleware(DevModeLoopbackOnly, settings=settings, sessions=app.state.sessionmaker)

    @app.exception_handler(VoxloopError)
    async def _voxloop_error(request: Request, exc: VoxloopError) -> JSONResponse:
        status = next((code for cls, code in _STATUS.items() if isinstance(exc, cls)), 400)
        message = str(exc)
        loc = list(exc.loc) if exc.loc else _infer_loc(request, message, status)
        body = {"detail": message, "error": type(exc).__name__, "loc": loc}
        return JSONResponse(body, status_code=status)

    @app.exception_handler(OverflowError)
    async def _int_overflow(request: Request, exc: OverflowError) -> JSONResponse:
        # A route without bounds passed a parameter beyond the store's 64-bit integers on
        # to it: that is the caller's bad value, refused like any other invalid field.
        loc = _oversized_param(request)
        if loc is None:
            return JSONResponse({"detail": "internal server error"}, status_code=500)
        item = {"loc": loc, "msg": f"must be at most {_MAX_INT}", "type": "less_than_equal"}
        return JSONResponse({"detail": [item]}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = getattr(exc, "headers", None)
        if exc.status_code in (204, 304):
            return Response(status_code=exc.status_code, headers=headers)
        detail = exc.detail
        body: dict[str, Any] = {"detail": detail}
        if 400 <= exc.status_code < 500 and isinstance(detail, str):
            # Every refusal names its field, as request validation errors do.
            body["loc"] = _infer_loc(request, detail, exc.status_code)
        elif isinstance(detail, list):
            # Field errors raised by hand get the error type request validation gives them.
            body["detail"] = [
                {"type": "value_error", **item} if isinstance(item, dict) else item
                for item in detail
            ]
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """Report liveness and version."""
        return {"status": "ok", "version": __version__}

    # Every API route needs a principal (token, session cookie, or dev mode with no users);
    # pages redirect to /login. The act pages check their own access, /login stays open.
    api_guard = [Depends(get_principal)]
    page_guard = [Depends(require_page_login)]
    for module in (
        ingest_views,
        understand_views,
        detect_views,
        analyze_views,
        act_views,
        assist_views,
        summary_views,
        qa_views,
        report_views,
    ):
        app.include_router(
            module.router, prefix="/api/v1", dependencies=api_guard, responses=API_ERRORS
        )
        # Pages are HTML for the browser, not part of the API the OpenAPI describes.
        if module is act_views:
            app.include_router(module.pages, include_in_schema=False)
        else:
            app.include_router(module.pages, dependencies=page_guard, include_in_schema=False)
    app.include_router(web_views.router, dependencies=page_guard, include_in_schema=False)
    static = Path(__file__).resolve().parent.parent / "web" / "static"
    app.mount("/static", StaticFiles(directory=static), name="static")
    return app


def app_from_env() -> FastAPI:
    """Create the app from the environment (the entry of each ``serve --workers`` process)."""
    from voxloop.config import load_settings

    # The parent migrated the store before starting the workers; N workers must not race.
    return create_app(load_settings(), run_migrations=False)
