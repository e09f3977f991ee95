"""Application factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from voxloop import __version__
from voxloop.api.service import get_principal, require_page_login
from voxloop.config import Settings
from voxloop.errors import (
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
