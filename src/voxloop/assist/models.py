"""Operational tables of the assist domain: QA staff's verdicts on quality-inspection hits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from voxloop.store.models import Base, UTCDateTime


class QaLabel(Base):
    """A QA reviewer's verdict on one rule for one conversation (the latest one counts).

    ``verdict`` is ``confirm`` (the hit is a real violation), ``overturn`` (the hit is
    wrong) or ``missed`` (a violation the engine did not report). Every change is also
    written to the act audit log.
    """

    __tablename__ = "assist_qa_labels"
    __table_args__ = (
        UniqueConstraint("voice_id", "rule_id", name="uq_assist_qa_labels_voice_rule"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    voice_id: Mapped[str] = mapped_column(String(200), index=True)
    rule_id: Mapped[str] = mapped_column(String(64))
    hit_id: Mapped[str | None] = mapped_column(String(32), index=True)
    verdict: Mapped[str] = mapped_column(String(10))
    note: Mapped[str | None] = mapped_column(Text)
    province: Mapped[str | None] = mapped_column(String(100))
    city: Mapped[str | None] = mapped_column(String(100))
    actor: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
