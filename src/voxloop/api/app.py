"""Application factory."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session, sessionmaker
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
    async def _voxloop_error(_request: Request, exc: VoxloopError) -> JSONResponse:
        status = next((code for cls, code in _STATUS.items() if isinstance(exc, cls)), 400)
        return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status_code=status)

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
        app.include_router(module.router, prefix="/api/v1", dependencies=api_guard)
        if module is act_views:
            app.include_router(module.pages)
        else:
            app.include_router(module.pages, dependencies=page_guard)
    app.include_router(web_views.router, dependencies=page_guard)
    static = Path(__file__).resolve().parent.parent / "web" / "static"
    app.mount("/static", StaticFiles(directory=static), name="static")
    return app
