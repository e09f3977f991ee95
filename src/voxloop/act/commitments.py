"""Service commitments as data: load ``commitments.yaml``, compute due times on SLA calendars."""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field

COMMITMENTS_FILE = Path(__file__).resolve().parent / "commitments.yaml"
LOCAL_TZ = ZoneInfo("Asia/Shanghai")
BUSINESS_START = dt.time(9, 0)
BUSINESS_END = dt.time(18, 0)


class AppliesTo(BaseModel):
    """Which orders (scenarios/channels) and journey events a commitment covers."""

    model_config = ConfigDict(extra="forbid")

    scenarios: list[str] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=list)
    events: list[str] = Field(default_factory=list)


class EscalationLevel(BaseModel):
    """One step of the escalation chain, ``after_hours`` past the due time."""

    model_config = ConfigDict(extra="forbid")

    level: int = Field(ge=1)
    after_hours: float = Field(ge=0)
    recipients: list[str]


class Commitment(BaseModel):
    """A published service commitment with its time limit and calendar."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: dict[str, str]
    rule: str | None = None
    applies_to: AppliesTo
    hours: float = Field(gt=0)
    calendar: Literal["24x7", "business"] = "24x7"
    escalation: list[EscalationLevel] | None = None

    def applies_to_order(self, *, scenario: str | None, channel: str | None) -> bool:
        """Return whether an order of ``scenario`` from ``channel`` falls under this commitment."""
        spec = self.applies_to
        if not spec.scenarios and not spec.channels:
            return False
        if spec.scenarios and scenario not in spec.scenarios:
            return False
        return not spec.channels or channel in spec.channels


class CommitmentBook(BaseModel):
    """All commitments plus the default reminder lead time and escalation chain."""

    model_config = ConfigDict(extra="forbid")

    reminder_before_hours: float = Field(default=4, ge=0)
    escalation: list[EscalationLevel]
    commitments: list[Commitment]

    def chain(self, commitment_id: str | None) -> list[EscalationLevel]:
        """Return the escalation chain of a commitment (its own or the default)."""
        for c in self.commitments:
            if c.id == commitment_id and c.escalation:
                return sorted(c.escalation, key=lambda e: e.level)
        return sorted(self.escalation, key=lambda e: e.level)

    def get(self, commitment_id: str) -> Commitment | None:
        """Return the commitment called ``commitment_id``."""
        return next((c for c in self.commitments if c.id == commitment_id), None)


def load_commitments(path: Path | None = None) -> CommitmentBook:
    """Read and validate a commitments YAML file (the packaged one by default)."""
    if path is None:
        return _packaged()
    return CommitmentBook.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


@cache
def _packaged() -> CommitmentBook:
    text = COMMITMENTS_FILE.read_text(encoding="utf-8")
    return CommitmentBook.model_validate(yaml.safe_load(text))


def is_workday(day: dt.date) -> bool:
    """Return whether ``day`` is a Chinese working day (holidays and make-up days included)."""
    import chinese_calendar

    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        # Years the calendar does not publish yet: fall back to Monday-Friday.
        return day.weekday() < 5


def add_business_hours(start: dt.datetime, hours: float) -> dt.datetime:
    """Return the instant ``hours`` of business time (09-18 local, workdays) after ``start``."""
    remaining = dt.timedelta(hours=hours)
    cursor = start.astimezone(LOCAL_TZ)
    # Bounded walk over days: at most a few holidays' worth of iterations per call.
    for _ in range(3660):
        day = cursor.date()
        open_at = dt.datetime.combine(day, BUSINESS_START, LOCAL_TZ)
        close_at = dt.datetime.combine(day, BUSINESS_END, LOCAL_TZ)
        if is_workday(day) and cursor < close_at:
            begin = max(cursor, open_at)
            available = close_at - begin
            if remaining <= available:
                return (begin + remaining).astimezone(dt.UTC)
            remaining -= available
        cursor = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), LOCAL_TZ)
    raise ValueError(f"business-hours deadline of {hours} h from {start} is beyond ten years")


def deadline(start: dt.datetime, hours: float, calendar: str) -> dt.datetime:
    """Return the due time ``hours`` after ``start`` on the given SLA calendar."""
    if calendar == "business":
        return add_business_hours(start, hours)
    return (start + dt.timedelta(hours=hours)).astimezone(dt.UTC)


def due_for_order(
    *,
    book: CommitmentBook,
    scenario: str | None,
    channel: str | None,
    start: dt.datetime,
) -> tuple[str | None, dt.datetime | None]:
    """Return (commitment id, due time) of the strictest commitment covering an order."""
    best: tuple[str | None, dt.datetime | None] = (None, None)
    for c in book.commitments:
        if not c.applies_to_order(scenario=scenario, channel=channel):
            continue
        due = deadline(start, c.hours, c.calendar)
        if best[1] is None or due < best[1]:
            best = (c.id, due)
    return best
