"""Request-scoped dependencies shared by every domain's routes: settings, session, principal.

Protect a route with ``principal: Principal = Depends(require_permission("read"))`` or a whole
router with ``dependencies=[Depends(get_principal)]``.  See ``voxloop.act.access`` for the
authentication rules (bearer API token, signed session cookie, dev mode).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from voxloop.act.access import (
    DEV_ADMIN,
    SESSION_COOKIE,
    Principal,
    authenticate_token,
    has_users,
    principal_from_cookie,
)
from voxloop.config import Settings


def get_settings(request: Request) -> Settings:
    """Return the settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """Yield an operational-store session, closed after the request."""
    with request.app.state.sessionmaker() as session:
        yield session


def optional_principal(
    request: Request,
    session: Session = Depends(get_session),
    settings: Settings = Depends(get_settings),
) -> Principal | None:
    """Return the caller from a bearer token or session cookie, the dev admin, or ``None``.

    A bearer token that is present but invalid is refused outright (401) rather than
    falling back to the cookie or dev mode, so a bad credential never silently works.
    """
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        principal = (
            authenticate_token(session=session, token=token.strip())
            if scheme.lower() == "bearer"
            else None
        )
        if principal is None:
            raise HTTPException(
                status_code=401,
                detail="invalid or revoked API token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return principal
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        principal = principal_from_cookie(
            session=session, secret_key=settings.secret_key, value=cookie
        )
        if principal is not None:
            return principal
    if settings.env == "dev" and not has_users(session=session):
        return DEV_ADMIN
    return None


def get_principal(principal: Principal | None = Depends(optional_principal)) -> Principal:
    """Return the authenticated caller or refuse the request with 401."""
    if principal is None:
        raise HTTPException(
            status_code=401,
            detail="authentication required: send 'Authorization: Bearer <token>' or log in",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


def require_permission(permission: str) -> Callable[..., Principal]:
    """Return a dependency that admits callers whose role grants ``permission`` (else 403)."""

    def dependency(principal: Principal = Depends(get_principal)) -> Principal:
        if not principal.can(permission):
            raise HTTPException(
                status_code=403,
                detail=f"role {principal.role!r} may not {permission}",
            )
        return principal

    return dependency


def require_page_login(
    request: Request, principal: Principal | None = Depends(optional_principal)
) -> Principal:
    """Return the caller of a dashboard page, or redirect the browser to ``/login``."""
    if principal is None:
        from urllib.parse import quote

        raise HTTPException(
            status_code=303,
            detail="login required",
            headers={"Location": f"/login?next={quote(request.url.path)}"},
        )
    return principal
