"""Pydantic models of the act domain's API: work orders, transitions, answers, users."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ScenarioCode = Literal[
    "BILL",
    "USAGE",
    "PLAN",
    "UNSUB",
    "MKT",
    "CHNL",
    "PRIV",
    "INTL",
    "MNET",
    "HBB",
    "CMPL",
    "SVC",
    "SUPV",
    "TERM",
]
SourceKind = Literal["voice", "problem", "alert", "manual"]
Priority = Literal["low", "normal", "high", "urgent"]
StateName = Literal[
    "new",
    "assigned",
    "in_progress",
    "pending_customer",
    "escalated",
    "resolved",
    "verified",
    "closed",
    "reopened",
]


class OrderCreate(BaseModel):
    """A new work order from a voice, a problem, an alert or by hand."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300)
    description: str | None = Field(default=None, max_length=20_000)
    source_kind: SourceKind = "manual"
    source_ref: str | None = Field(default=None, max_length=200)
    scenario: ScenarioCode | None = None
    subcategory: str | None = Field(default=None, max_length=100)
    channel: str | None = Field(default=None, max_length=50)
    segment: str | None = Field(default=None, max_length=100)
    province: str | None = Field(default=None, max_length=100)
    city: str | None = Field(default=None, max_length=100)
    district: str | None = Field(default=None, max_length=100)
    priority: Priority = "normal"
    voice_ids: list[str] = Field(default_factory=list, max_length=100_000)
    customer_ids: list[str] = Field(default_factory=list, max_length=100_000)
    assignee: str | None = Field(default=None, max_length=100)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class FromVoicesRequest(BaseModel):
    """An order for lake voices: one voice, a problem's voices or an alert's."""

    model_config = ConfigDict(extra="forbid")

    voice_ids: list[str] = Field(min_length=1, max_length=100_000)
    source_kind: SourceKind = "voice"
    source_ref: str | None = Field(default=None, max_length=200)
    title: str | None = Field(default=None, min_length=1, max_length=300)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class TransitionRequest(BaseModel):
    """Move an order to ``to``; ``version`` is the version the caller last saw."""

    model_config = ConfigDict(extra="forbid")

    to: StateName
    version: int = Field(ge=1)
    reason: str | None = Field(default=None, max_length=100)
    notes: str | None = Field(default=None, max_length=20_000)


class AssignRequest(BaseModel):
    """Give an order to a user (by username)."""

    model_config = ConfigDict(extra="forbid")

    assignee: str = Field(min_length=1, max_length=100)
    version: int = Field(ge=1)


class CommentRequest(BaseModel):
    """A note on an order."""

    model_config = ConfigDict(extra="forbid")

    body: str = Field(min_length=1, max_length=20_000)


class AnswerRequest(BaseModel):
    """A customer's answer to a callback or re-survey."""

    model_config = ConfigDict(extra="forbid")

    satisfied: bool
    score: float | None = Field(default=None, ge=0, le=10)
    note: str | None = Field(default=None, max_length=5_000)


class VerificationPolicy(BaseModel):
    """When a resolved order counts as verified."""

    model_config = ConfigDict(extra="forbid")

    min_answers: int = Field(default=3, ge=0)
    min_positive_share: float = Field(default=0.8, ge=0, le=1)
    quiet_days: float = Field(default=7, ge=0)
    suppression_days: float = Field(default=7, ge=0)


class OrderOut(BaseModel):
    """A work order as the API returns it."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    title: str
    description: str | None
    source_kind: str
    source_ref: str | None
    scenario: str | None
    subcategory: str | None
    channel: str | None
    segment: str | None
    province: str | None
    city: str | None
    district: str | None
    priority: str
    state: str
    assignee_id: int | None
    department: str | None
    team: str | None
    queue: str | None
    routing_rule: str | None
    commitment_id: str | None
    due_at: datetime | None
    breached_at: datetime | None
    escalation_level: int
    resolution_reason: str | None
    resolution_notes: str | None
    regressed: bool
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    assigned_at: datetime | None
    in_progress_at: datetime | None
    pending_customer_at: datetime | None
    escalated_at: datetime | None
    resolved_at: datetime | None
    verified_at: datetime | None
    closed_at: datetime | None
    reopened_at: datetime | None
    version: int


class LoginForm(BaseModel):
    """Username and password posted by the login page."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1_000)


class SourceOrderRequest(BaseModel):
    """A work order from a problem or an alert; empty fields are pre-filled from it."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=300)
    description: str | None = Field(default=None, max_length=20_000)
    priority: Priority | None = None
    voice_ids: list[str] = Field(default_factory=list, max_length=100_000)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class LinkVoicesRequest(BaseModel):
    """Link more of a source's voices to one of its orders (``version`` last seen)."""

    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(min_length=1, max_length=32)
    version: int = Field(ge=1)
    voice_ids: list[str] = Field(min_length=1, max_length=100_000)


class OrderVersion(BaseModel):
    """An order and the version the caller last saw."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=32)
    version: int = Field(ge=1)


class ResolveRequest(BaseModel):
    """Resolve orders of a problem or an alert with a note saying what was fixed."""

    model_config = ConfigDict(extra="forbid")

    fix_note: str = Field(min_length=1, max_length=20_000)
    orders: list[OrderVersion] = Field(min_length=1, max_length=1_000)
    reason: str = Field(default="fixed", min_length=1, max_length=100)
