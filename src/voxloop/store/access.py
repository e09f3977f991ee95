"""Who is calling and what they may see: roles, permissions, region scopes.

These types are read by every layer (a detector lists problems in the caller's region,
an analysis filters rows by it), so they live at the bottom; the user and token tables
and authentication stay in ``voxloop.act.access``, which re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, true

from voxloop.errors import PermissionDeniedError

ROLES: Final = ("admin", "supervisor", "analyst", "agent")

#: What each role may do; checked by ``require``.
PERMISSIONS: Final[dict[str, frozenset[str]]] = {
    "admin": frozenset({"read", "write", "assign", "manage_users", "operate"}),
    "supervisor": frozenset({"read", "write", "assign", "operate"}),
    "analyst": frozenset({"read"}),
    "agent": frozenset({"read", "write"}),
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: user, role and region scope (``None`` = every region)."""

    user_id: int | None
    username: str
    role: str
    province: str | None = None
    city: str | None = None

    def can(self, permission: str) -> bool:
        """Return whether the role grants ``permission``."""
        return permission in PERMISSIONS.get(self.role, frozenset())

    def sees(self, province: str | None, city: str | None) -> bool:
        """Return whether a record in ``province``/``city`` lies inside this scope."""
        if self.province is None:
            return True
        if province != self.province:
            return False
        return self.city is None or city == self.city


def require(principal: Principal, permission: str) -> None:
    """Raise ``PermissionDeniedError`` unless ``principal`` holds ``permission``."""
    if not principal.can(permission):
        raise PermissionDeniedError(
            f"role {principal.role!r} of {principal.username!r} may not {permission}"
        )


def scope_filter(principal: Principal, province_col: Any, city_col: Any) -> ColumnElement[bool]:
    """Return a SQL condition restricting rows to the principal's region subtree."""
    if principal.province is None:
        return true()
    cond: ColumnElement[bool] = province_col == principal.province
    if principal.city is not None:
        cond = and_(cond, city_col == principal.city)
    return cond


def parse_region(region: str | None) -> tuple[str | None, str | None]:
    """Split ``"province/city"`` (or ``"province"``, or empty for all) into its parts."""
    if not region:
        return None, None
    parts = [p.strip() for p in region.split("/") if p.strip()]
    if len(parts) > 2:
        raise ValueError(f"region {region!r}: expected 'province' or 'province/city'")
    return parts[0], parts[1] if len(parts) > 1 else None


DEV_ADMIN: Final = Principal(user_id=None, username="dev-admin", role="admin")
SYSTEM: Final = Principal(user_id=None, username="system", role="admin")
