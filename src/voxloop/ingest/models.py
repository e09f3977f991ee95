"""Operational tables of the ingest domain: real customer ids and who looked them up."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from voxloop.store.models import Base


class CustomerIdentity(Base):
    """The real customer id behind a pseudonym; only ``resolve_contact`` reads it."""

    __tablename__ = "customer_identities"

    pseudonym: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(200))
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IdentityAccessLog(Base):
    """Append-only log of every attempt to resolve a pseudonym to a real customer id."""

    __tablename__ = "identity_access_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pseudonym: Mapped[str] = mapped_column(String(40), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(String(500))
    found: Mapped[bool] = mapped_column()
    accessed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
