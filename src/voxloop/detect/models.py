"""Operational tables of the detect domain: alerts, webhook outbox, problems, memberships.

Problems and their memberships live here (not in the lake) because people merge and split
them and those edits must be transactional and remembered.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from voxloop.store.models import Base, UTCDateTime


def utcnow() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(UTC)


TS = UTCDateTime()


class Alert(Base):
    """A surge alert: one per root cause, extended while the surge goes on."""

    __tablename__ = "detect_alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedup_key: Mapped[str] = mapped_column(String(500), index=True)
    root_cause: Mapped[str] = mapped_column(Text)
    values_json: Mapped[str] = mapped_column(Text, default="{}")
    granularity: Mapped[str] = mapped_column(String(10))
    state: Mapped[str] = mapped_column(String(20), default="open", index=True)
    first_bucket: Mapped[int] = mapped_column(Integer)
    last_bucket: Mapped[int] = mapped_column(Integer)
    windows: Mapped[int] = mapped_column(Integer, default=1)
    actual: Mapped[float] = mapped_column(Float)
    expected: Mapped[float] = mapped_column(Float)
    share: Mapped[float] = mapped_column(Float)
    pvalue: Mapped[float] = mapped_column(Float)
    typical_json: Mapped[str] = mapped_column(Text, default="[]")
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class OutboxMessage(Base):
    """A notification waiting to be delivered (at least once, retried with backoff)."""

    __tablename__ = "detect_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(Integer, index=True)
    event: Mapped[str] = mapped_column(String(50))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(TS, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_detect_outbox_pending", "delivered_at", "next_attempt_at"),)


class Problem(Base):
    """A group of voices about the same problem, with its readable summary."""

    __tablename__ = "detect_problems"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    keywords_json: Mapped[str] = mapped_column(Text, default="[]")
    scenario: Mapped[str | None] = mapped_column(String(20), nullable=True)
    province: Mapped[str | None] = mapped_column(String(100), nullable=True)
    city: Mapped[str | None] = mapped_column(String(100), nullable=True)
    state: Mapped[str] = mapped_column(String(20), default="new")
    config_version: Mapped[str] = mapped_column(String(40))
    n_voices: Mapped[int] = mapped_column(Integer, default=0)
    n_customers: Mapped[int] = mapped_column(Integer, default=0)
    first_seen: Mapped[datetime] = mapped_column(TS)
    last_seen: Mapped[datetime] = mapped_column(TS)
    typical_json: Mapped[str] = mapped_column(Text, default="[]")
    daily_json: Mapped[str] = mapped_column(Text, default="{}")
    regions_json: Mapped[str] = mapped_column(Text, default="{}")
    merged_into: Mapped[str | None] = mapped_column(String(64), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class ProblemMember(Base):
    """Which problem a voice belongs to; ``source`` is ``auto`` or ``human``."""

    __tablename__ = "detect_problem_members"

    voice_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    problem_id: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(10), default="auto")
    similarity: Mapped[float] = mapped_column(Float, default=1.0)
    assigned_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class ProblemEdit(Base):
    """A merge or split made by a person, replayed so regrouping keeps it."""

    __tablename__ = "detect_problem_edits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(10))
    payload: Mapped[str] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
