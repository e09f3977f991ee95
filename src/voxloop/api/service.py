"""Request-scoped dependencies shared by every domain's routes."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from sqlalchemy.orm import Session

from voxloop.config import Settings


def get_settings(request: Request) -> Settings:
    """Return the settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """Yield an operational-store session, closed after the request."""
    with request.app.state.sessionmaker() as session:
        yield session
