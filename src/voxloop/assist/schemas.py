"""Pydantic records of the assist domain."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class KbEntry(BaseModel):
    """One knowledge-base entry (a FAQ question and its answer) at one version."""

    entry_id: str = Field(min_length=1, max_length=200)
    question: str = Field(min_length=1, max_length=2_000)
    answer: str = Field(min_length=1, max_length=20_000)
    region: str | None = Field(default=None, description="Region the entry applies to; None: all.")
    valid_from: date | None = None
    valid_to: date | None = None
    version: int = Field(default=1, ge=1)


class KbImportResult(BaseModel):
    """What an import did to the knowledge base."""

    source: str
    read: int
    added: int
    updated: int
    unchanged: int


class AnswerRequest(BaseModel):
    """A customer question to answer from the knowledge base."""

    question: str = Field(min_length=1, max_length=2_000)
    region: str | None = Field(default=None, max_length=100)
    on: date | None = Field(default=None, description="Date the answer must be valid on.")


class Candidate(BaseModel):
    """A knowledge-base entry retrieved for a question, with its scores."""

    entry_id: str
    version: int
    question: str
    score: float = Field(description="Reciprocal-rank-fusion score.")
    similarity: float = Field(description="Encoder cosine of the query and the entry question.")


class Answer(BaseModel):
    """The assistant's answer, quoting its source entry, or a hand-over to a human."""

    known: bool
    answer: str | None
    entry_id: str | None
    version: int | None
    confidence: float
    routed_to_human: bool
    candidates: list[Candidate]


# ---------------------------------------------------------------------------
# Plan catalogue and recommendation


class PlanOffer(BaseModel):
    """One tariff plan of the operator's catalogue."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    monthly_fee: float = Field(ge=0, description="CNY per month.")
    data_gb: float = Field(ge=0, description="Data allowance per month, GB.")
    voice_minutes: float = Field(ge=0, description="Voice allowance per month; 0: none.")
    is_5g: bool = False
    segments: list[str] = Field(
        default_factory=list, description="Customer segments that may order it; empty: anyone."
    )


class PlanCatalogue(BaseModel):
    """The plans an agent may recommend, and the headroom a recommendation keeps."""

    model_config = ConfigDict(extra="forbid")

    headroom: float = Field(default=0.2, ge=0, le=2, description="0.2: allowances ≥ 1.2 × use.")
    plans: list[PlanOffer] = Field(min_length=1)

    @field_validator("plans")
    @classmethod
    def _unique_names(cls, plans: list[PlanOffer]) -> list[PlanOffer]:
        seen: set[str] = set()
        for i, plan in enumerate(plans):
            if plan.name in seen:
                raise ValueError(f"plan {i + 1}: name {plan.name!r} appears twice")
            seen.add(plan.name)
        return plans


class CurrentPlan(BaseModel):
    """The plan a customer is on, as the profile states it (fields may be unknown)."""

    name: str | None = None
    monthly_fee: float | None = None
    data_gb: float | None = None
    voice_minutes: float | None = None
    is_5g: bool | None = None


class Usage(BaseModel):
    """A customer's real average monthly usage, from the profile attributes."""

    data_used_gb: float | None = None
    voice_used_min: float | None = None


PlanStatus = Literal["recommend", "fits", "upgrade", "no_cover", "unknown_usage", "no_customer"]


class PlanRecommendation(BaseModel):
    """The cheapest plan covering a customer's real usage, with the monthly saving.

    ``status``: ``recommend`` (a cheaper plan covers the usage), ``fits`` (the current plan
    already is the cheapest that does), ``upgrade`` (usage exceeds the current plan; the
    cheapest covering plan costs more), ``no_cover`` (no plan covers it), ``unknown_usage``
    (no recommendation without usage) and ``no_customer`` (no profile).
    """

    customer_id: str | None
    status: PlanStatus
    current: CurrentPlan | None = None
    usage: Usage | None = None
    recommended: PlanOffer | None = None
    monthly_saving: float | None = Field(
        default=None, description="Current minus recommended monthly fee (negative: costs more)."
    )
    headroom: float
    kept_5g: bool = Field(
        default=False, description="4G plans were left out because the customer keeps 5G."
    )
    explanation: dict[str, str] = Field(description="Why, in zh-CN and en.")


# ---------------------------------------------------------------------------
# Agent-assist sessions

#: Longest text of one turn (characters); a longer one is refused, not cut.
MAX_TURN_CHARS = 4_000
#: Most turns in one request.
MAX_TURNS_PER_REQUEST = 100
#: Longest call the timestamps may describe (ms): 24 hours.
MAX_MS = 24 * 3600 * 1000

Role = Literal["customer", "agent"]


class TurnIn(BaseModel):
    """One turn of a live conversation, as the telephony or chat system sends it."""

    model_config = ConfigDict(extra="forbid")

    role: Role = Field(description="'customer' or 'agent'.")
    text: str = Field(min_length=1, max_length=MAX_TURN_CHARS)
    start_ms: int | None = Field(default=None, ge=0, le=MAX_MS, description="Offset in the call.")
    end_ms: int | None = Field(default=None, ge=0, le=MAX_MS)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("text is blank")
        return text

    @field_validator("end_ms")
    @classmethod
    def _after_start(cls, end: int | None, info: ValidationInfo) -> int | None:
        start = info.data.get("start_ms")
        if end is not None and start is not None and end < start:
            raise ValueError(f"end_ms {end} is before start_ms {start}")
        return end


class TurnsRequest(BaseModel):
    """New turns of a session (only the ones not sent before), oldest first."""

    model_config = ConfigDict(extra="forbid")

    turns: list[TurnIn] = Field(min_length=1, max_length=MAX_TURNS_PER_REQUEST)
    customer_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Sets the session's customer when it has none yet (real id or pseudonym).",
    )


class SessionCreate(BaseModel):
    """Open an assist session; every field is optional."""

    model_config = ConfigDict(extra="forbid")

    session_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._:-]{1,100}$",
        description="The caller's id for the conversation (e.g. the call id); generated if absent.",
    )
    customer_id: str | None = Field(default=None, min_length=1, max_length=200)
    channel: str | None = Field(default=None, max_length=50, description="e.g. hotline_10086.")


class TurnOut(BaseModel):
    """A stored turn with its position in the conversation."""

    index: int
    role: Role
    text: str
    start_ms: int | None = None
    end_ms: int | None = None


class ScenarioView(BaseModel):
    """Service scenario and intent of what the customer said so far."""

    scenario: str | None
    subcategory: str | None
    confidence: float | None
    source: str | None
    intent: str | None
    names: dict[str, str] = Field(default_factory=dict, description="Scenario name per language.")


class EmotionPoint(BaseModel):
    """Sentiment and emotion of one customer turn."""

    turn: int
    sentiment_score: float
    emotion: str | None
    urgency: float
    triggers: list[str] = Field(default_factory=list)


class CommitmentView(BaseModel):
    """The service commitment that applies to the conversation so far."""

    id: str
    name: dict[str, str]
    hours: float
    calendar: str
    due_at: datetime


class Escalation(BaseModel):
    """Whether the conversation risks escalating (10080, 12300, media, legal...) and why."""

    warning: bool
    level: Literal["none", "watch", "high"]
    reasons: list[str] = Field(description="Reason codes, e.g. 'supervision', 'media'.")
    triggers: list[str] = Field(description="The customer's words that raised it.")
    explanation: dict[str, str]
    if_escalated: CommitmentView | None = Field(
        default=None,
        description="The commitment that applies once the customer takes the threatened "
        "channel (10080, 12300, 12315, media), due from now.",
    )


class EmotionTrend(BaseModel):
    """Sentiment of the customer turn by turn, its direction and the escalation warning."""

    points: list[EmotionPoint]
    trend: Literal["improving", "stable", "worsening", "unknown"]
    escalation: Escalation


class Suggestion(BaseModel):
    """A knowledge-base answer suggested to the agent, quoting its entry and version."""

    entry_id: str
    version: int
    question: str
    answer: str
    similarity: float
    confident: bool = Field(description="Similarity reaches the answer threshold.")
    from_turn: int = Field(description="Index of the customer turn it answers.")


class SessionState(BaseModel):
    """What the agent sees: scenario, emotion trend, suggestions, commitment, plan."""

    session_id: str
    customer_id: str | None = Field(description="The customer's pseudonym in the lake.")
    channel: str | None
    region: str | None
    created_at: datetime
    updated_at: datetime
    n_turns: int
    scenario: ScenarioView | None
    emotion: EmotionTrend
    suggestions: list[Suggestion]
    suggestions_note: str | None = Field(description="Why there are none, when empty.")
    commitment: CommitmentView | None
    plan: PlanRecommendation | None
    elapsed_ms: float | None = Field(default=None, description="Server time of this update.")
    turns: list[TurnOut] | None = Field(default=None, description="All turns (GET only).")
