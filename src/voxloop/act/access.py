"""People and access: roles, region scopes, argon2 passwords, API tokens, signed session cookies.

Authentication rules:

* API requests carry ``Authorization: Bearer vx_<id>_<secret>``; only the SHA-256 of the
  secret is stored (the secret has 256 bits of entropy, so a slow hash adds nothing).
* Dashboard pages use the ``voxloop_session`` cookie set by ``/login``: ``<payload>.<hmac>``
  signed with ``settings.secret_key`` and carrying an expiry.
* Dev mode: while ``env == "dev"`` and no user exists yet, requests without credentials act as
  a built-in ``dev-admin`` (so ``make demo`` works out of the box).  Creating the first user
  (``voxloop user add``) ends dev mode; in ``test``/``prod`` credentials are always required.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, datetime
from typing import Any, Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voxloop.act.models import ApiToken, AuditEntry, User
from voxloop.errors import ConflictError, NotFoundError, PermissionDeniedError
from voxloop.store.access import (
    DEV_ADMIN,
    PERMISSIONS,
    ROLES,
    SYSTEM,
    Principal,
    parse_region,
    require,
    scope_filter,
)

__all__ = [
    "DEV_ADMIN",
    "PERMISSIONS",
    "ROLES",
    "SESSION_COOKIE",
    "SYSTEM",
    "InvalidCredentialError",
    "Principal",
    "add_user",
    "authenticate_password",
    "authenticate_token",
    "create_token",
    "get_user",
    "has_users",
    "make_session_cookie",
    "parse_region",
    "principal_from_cookie",
    "principal_of",
    "read_session_cookie",
    "request_principal",
    "require",
    "revoke_token",
    "scope_filter",
]

SESSION_COOKIE: Final = "voxloop_session"
SESSION_SECONDS: Final = 12 * 3600
TOKEN_PREFIX: Final = "vx_"


def _audit(session: Session, actor: str, action: str, user_id: str, detail: dict[str, Any]) -> None:
    session.add(
        AuditEntry(
            at=_now(),
            actor=actor,
            action=action,
            object_type="user",
            object_id=user_id,
            detail=json.dumps(detail, ensure_ascii=False),
        )
    )


def _hasher() -> PasswordHasher:
    return PasswordHasher()


def _now() -> datetime:
    return datetime.now(UTC)


def add_user(
    *,
    session: Session,
    username: str,
    role: str,
    password: str | None = None,
    province: str | None = None,
    city: str | None = None,
    display_name: str | None = None,
    actor: str = "cli",
) -> User:
    """Create a user (argon2-hashed password); refuse unknown roles and duplicates."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not username or len(username) > 100:
        raise ValueError("username must be 1-100 characters")
    if city is not None and province is None:
        raise ValueError("a city scope needs its province (region is province[/city])")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise ConflictError(f"user {username!r} already exists")
    user = User(
        username=username,
        role=role,
        province=province or None,
        city=city or None,
        display_name=display_name,
        password_hash=_hasher().hash(password) if password else None,
        active=True,
        created_at=_now(),
    )
    session.add(user)
    session.flush()
    _audit(
        session,
        actor,
        "user.create",
        str(user.id),
        {"username": username, "role": role, "province": province, "city": city},
    )
    return user


def get_user(*, session: Session, username: str) -> User:
    """Return the user called ``username``."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFoundError(f"no user {username!r}")
    return user


def principal_of(user: User) -> Principal:
    """Return the principal acting as ``user``."""
    return Principal(
        user_id=user.id,
        username=user.username,
        role=user.role,
        province=user.province,
        city=user.city,
    )


def authenticate_password(*, session: Session, username: str, password: str) -> Principal | None:
    """Return the principal when ``password`` matches ``username``'s argon2 hash."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.active or not user.password_hash:
        # Hash anyway so response time does not reveal which usernames exist.
        _hasher().hash(password or "x")
        return None
    try:
        _hasher().verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    return principal_of(user)


def create_token(
    *, session: Session, username: str, name: str | None = None, actor: str = "cli"
) -> str:
    """Create an API token for ``username``; return it (shown once, stored hashed)."""
    user = get_user(session=session, username=username)
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    session.add(
        ApiToken(
            id=token_id,
            user_id=user.id,
            secret_hash=hashlib.sha256(secret.encode()).hexdigest(),
            name=name,
            created_at=_now(),
        )
    )
    session.flush()
    _audit(session, actor, "token.create", str(user.id), {"token_id": token_id, "name": name})
    return f"{TOKEN_PREFIX}{token_id}_{secret}"


def authenticate_token(*, session: Session, token: str) -> Principal | None:
    """Return the principal of a valid, unrevoked token of an active user."""
    if not token.startswith(TOKEN_PREFIX) or token.count("_") < 2:
        return None
    token_id, _, secret = token[len(TOKEN_PREFIX) :].partition("_")
    row = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None), User.active.is_(True))
    ).first()
    if row is None:
        return None
    api_token, user = row
    digest = hashlib.sha256(secret.encode()).hexdigest()
    if not hmac.compare_digest(digest, api_token.secret_hash):
        return None
    return principal_of(user)


def revoke_token(*, session: Session, token_id: str) -> None:
    """Revoke a token by its id (the part after ``vx_``)."""
    api_token = session.get(ApiToken, token_id)
    if api_token is None:
        raise NotFoundError(f"no token {token_id!r}")
    api_token.revoked_at = _now()
    _audit(session, "cli", "token.revoke", str(api_token.user_id), {"token_id": token_id})


def has_users(*, session: Session) -> bool:
    """Return whether any user exists (dev mode ends with the first one)."""
    return bool(session.scalar(select(func.count(User.id))))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret_key: str, payload: str) -> str:
    return _b64(hmac.new(secret_key.encode(), payload.encode(), hashlib.sha256).digest())


def make_session_cookie(*, secret_key: str, user_id: int, now: float | None = None) -> str:
    """Return a signed, expiring session cookie value for ``user_id``."""
    issued = time.time() if now is None else now
    payload = _b64(json.dumps({"u": user_id, "exp": int(issued + SESSION_SECONDS)}).encode())
    return f"{payload}.{_sign(secret_key, payload)}"


def read_session_cookie(*, secret_key: str, value: str, now: float | None = None) -> int | None:
    """Return the user id of a valid, unexpired cookie; ``None`` for anything else."""
    payload, _, signature = value.partition(".")
    if not payload or not hmac.compare_digest(signature, _sign(secret_key, payload)):
        return None
    try:
        data = json.loads(_unb64(payload))
        user_id, expires = int(data["u"]), int(data["exp"])
    except (ValueError, KeyError, TypeError):
        return None
    if expires < (time.time() if now is None else now):
        return None
    return user_id


def principal_from_cookie(*, session: Session, secret_key: str, value: str) -> Principal | None:
    """Return the principal of a session cookie whose user is still active."""
    user_id = read_session_cookie(secret_key=secret_key, value=value)
    if user_id is None:
        return None
    user = session.get(User, user_id)
    if user is None or not user.active:
        return None
    return principal_of(user)


class InvalidCredentialError(PermissionDeniedError):
    """A bearer token was sent but is not a valid, unrevoked token of an active user."""


def request_principal(
    *,
    session: Session,
    secret_key: str,
    dev_mode: bool,
    authorization: str | None,
    cookie: str | None,
) -> Principal | None:
    """Return the caller from a bearer token or session cookie, the dev admin, or ``None``.

    A bearer token that is present but invalid raises ``InvalidCredentialError`` rather
    than falling back to the cookie or dev mode, so a bad credential never silently works.
    ``dev_mode`` is ``settings.env == "dev"``: then, until the first user exists, a caller
    without credentials is the dev admin.
    """
    if authorization:
        scheme, _, token = authorization.partition(" ")
        principal = (
            authenticate_token(session=session, token=token.strip())
            if scheme.lower() == "bearer"
            else None
        )
        if principal is None:
            raise InvalidCredentialError("invalid or revoked API token")
        return principal
    if cookie:
        principal = principal_from_cookie(session=session, secret_key=secret_key, value=cookie)
        if principal is not None:
            return principal
    if dev_mode and not has_users(session=session):
        return DEV_ADMIN
    return None
