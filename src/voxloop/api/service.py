"""Request-scoped dependencies shared by every domain's routes: settings, session, principal.

Protect a route with ``principal: Principal = Depends(require_permission("read"))`` or a whole
router with ``dependencies=[Depends(get_principal)]``.  See ``voxloop.act.access`` for the
authentication rules (bearer API token, signed session cookie, dev mode).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from voxloop.act.access import (
    DEV_ADMIN,
    SESSION_COOKIE,
    Principal,
    authenticate_token,
    has_users,
    principal_from_cookie,
)
from voxloop.config import Settings

#: Seconds a verified bearer token is trusted without asking the store again.  A revoked
#: token (or a deactivated user) keeps working at most this long on a server that had just
#: seen it; in exchange the request path saves a store round trip and a thread hop.
TOKEN_CACHE_SECONDS = 5.0

#: Most tokens remembered at once; the cache is emptied when full (a burst of distinct
#: tokens only costs the look-ups the cache would have saved).
TOKEN_CACHE_SIZE = 10_000


class TokenCache:
    """Principals of recently verified bearer tokens, keyed by the token's SHA-256."""

    def __init__(self, seconds: float = TOKEN_CACHE_SECONDS, size: int = TOKEN_CACHE_SIZE) -> None:
        self.seconds = seconds
        self.size = size
        self._lock = threading.Lock()
        self._entries: dict[bytes, tuple[float, Principal]] = {}

    @staticmethod
    def key(token: str) -> bytes:
        """Return the cache key of ``token`` (its digest: the secret itself is never kept)."""
        return hashlib.sha256(token.encode()).digest()

    def get(self, key: bytes) -> Principal | None:
        """Return the principal cached for ``key`` unless its entry has expired."""
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key: bytes, principal: Principal) -> None:
        """Remember ``principal`` for ``key`` for ``seconds``."""
        with self._lock:
            if len(self._entries) >= self.size:
                self._entries.clear()
            self._entries[key] = (time.monotonic() + self.seconds, principal)


def _token_cache(request: Request) -> TokenCache:
    cache: TokenCache | None = getattr(request.app.state, "token_cache", None)
    if cache is None:
        # One cache per app; created on first use so the app factory stays unchanged.
        cache = TokenCache()
        request.app.state.token_cache = cache
    return cache


async def get_settings(request: Request) -> Settings:
    """Return the settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    """Yield an operational-store session, closed after the request.

    The session connects lazily inside the (sync) route, so opening it here costs no I/O;
    only a session left in a transaction (a read-only route) needs a worker thread to close.
    """
    session = request.app.state.sessionmaker()
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


def _lookup_token(request: Request, token: str) -> Principal | None:
    with request.app.state.sessionmaker() as session:
        return authenticate_token(session=session, token=token)


def _principal_without_token(request: Request, settings: Settings) -> Principal | None:
    with request.app.state.sessionmaker() as session:
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


async def optional_principal(request: Request) -> Principal | None:
    """Return the caller from a bearer token or session cookie, the dev admin, or ``None``.

    A bearer token that is present but invalid is refused outright (401) rather than
    falling back to the cookie or dev mode, so a bad credential never silently works.
    Verified tokens are cached for ``TOKEN_CACHE_SECONDS`` (invalid ones never are).
    """
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        principal = None
        if scheme.lower() == "bearer":
            cache = _token_cache(request)
            key = cache.key(token)
            principal = cache.get(key)
            if principal is None:
                principal = await run_in_threadpool(_lookup_token, request, token)
                if principal is not None:
                    cache.put(key, principal)
        if principal is None:
            raise HTTPException(
                status_code=401,
                detail="invalid or revoked API token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return principal
    # Read directly rather than through ``get_settings``: one dependency less per request.
    settings: Settings = request.app.state.settings
    if not request.cookies.get(SESSION_COOKIE) and settings.env != "dev":
        return None
    return await run_in_threadpool(_principal_without_token, request, settings)


async def get_principal(principal: Principal | None = Depends(optional_principal)) -> Principal:
    """Return the authenticated caller or refuse the request with 401."""
    if principal is None:
        raise HTTPException(
            status_code=401,
            detail="authentication required: send 'Authorization: Bearer <token>' or log in",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


def require_permission(permission: str) -> Callable[..., Awaitable[Principal]]:
    """Return a dependency that admits callers whose role grants ``permission`` (else 403)."""

    async def dependency(principal: Principal = Depends(get_principal)) -> Principal:
        if not principal.can(permission):
            raise HTTPException(
                status_code=403,
                detail=f"role {principal.role!r} may not {permission}",
            )
        return principal

    return dependency


async def require_page_login(
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
