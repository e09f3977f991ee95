"""Pydantic records of conversation summaries and the work-order drafts they pre-fill."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from voxloop.act.schemas import OrderCreate

Speaker = Literal["agent", "customer"]
Outcome = Literal["resolved", "unresolved", "escalated"]


class Turn(BaseModel):
    """One utterance of a conversation, PII already masked."""

    speaker: Speaker
    text: str
    start: float | None = Field(default=None, description="Seconds from the call start.")
    end: float | None = None


class Action(BaseModel):
    """Something the agent did or said they would do during the call."""

    code: str = Field(description="query, open, cancel, change, compensate, refer, sms")
    label: str = Field(description="Chinese name of the action.")
    status: Literal["done", "promised", "refused"]
    turn: int = Field(description="Index of the turn the action was read from.")
    evidence: str = Field(description="The clause the action was read from (masked).")


class FollowUp(BaseModel):
    """A promise the agent made: what will happen and by when."""

    kind: Literal["callback", "visit", "sms", "processing", "effective"]
    text: str
    due_text: str | None = None
    due_hours: float | None = Field(default=None, description="Hours from the end of the call.")
    turn: int


class Amount(BaseModel):
    """A money amount said in the call."""

    text: str
    value: float
    currency: str = "CNY"


class DataVolume(BaseModel):
    """A mobile-data volume said in the call."""

    text: str
    value_mb: float


class Entities(BaseModel):
    """Amounts, data volumes, plan/product names and dates mentioned; PII only as counts."""

    amounts: list[Amount] = Field(default_factory=list)
    data_volumes: list[DataVolume] = Field(default_factory=list)
    plans: list[str] = Field(default_factory=list)
    dates: list[str] = Field(default_factory=list)
    pii: dict[str, int] = Field(
        default_factory=dict, description="Masked PII spans per type (the values never leave)."
    )


class ConversationSummary(BaseModel):
    """A structured summary of a finished conversation (everything masked)."""

    intent: str | None = Field(description="Main customer intent code (taxonomy intents).")
    intent_label: str | None = None
    intents: list[str] = Field(default_factory=list)
    scenario: str | None = None
    scenario_label: str | None = None
    subcategory: str | None = None
    scenario_confidence: float | None = None
    actions: list[Action] = Field(default_factory=list)
    sentiment: str
    sentiment_score: float
    sentiment_end: str = Field(description="Sentiment of the customer's last two turns.")
    emotion: str | None = None
    urgency: float | None = None
    outcome: Outcome
    outcome_reason: str
    follow_ups: list[FollowUp] = Field(default_factory=list)
    entities: Entities = Field(default_factory=Entities)
    headline: str = Field(description="The customer's first request, masked.")
    abstract: str = Field(description="A few sentences in Chinese: the summary as prose.")
    source: Literal["template", "llm"] = "template"
    llm_note: str | None = Field(
        default=None, description="Why the LLM result was not used (timeout, bad answer...)."
    )
    turns: int
    model_version: str | None = None


class RouteInfo(BaseModel):
    """The route the act domain's rules give the draft."""

    rule_id: str
    department: str
    team: str
    queue: str


class WorkOrderDraft(BaseModel):
    """A work-order request pre-filled from a summary, with its route and due times."""

    order: OrderCreate
    routing: RouteInfo
    commitment_id: str | None
    sla_due_at: datetime | None = Field(description="Due time from the service commitments.")
    promised_due_at: datetime | None = Field(
        default=None, description="The earliest due time the agent promised in the call."
    )


class SummaryRequest(BaseModel):
    """Summarise a conversation given as text or as a lake voice; optionally file the order."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, min_length=1, max_length=200_000)
    voice_id: str | None = Field(default=None, min_length=1, max_length=200)
    create: bool = False
    channel: str | None = Field(default=None, max_length=50)
    province: str | None = Field(default=None, max_length=100)
    city: str | None = Field(default=None, max_length=100)
    segment: str | None = Field(default=None, max_length=100)
    customer_id: str | None = Field(default=None, max_length=200)
    use_llm: bool = Field(default=True, description="Use the configured LLM if there is one.")

    @model_validator(mode="after")
    def _one_source(self) -> SummaryRequest:
        if (self.text is None) == (self.voice_id is None):
            raise ValueError("give exactly one of 'text' or 'voice_id'")
        return self


class SummaryResponse(BaseModel):
    """The summary, the draft, and the order when one was created."""

    summary: ConversationSummary
    draft: WorkOrderDraft
    order: dict[str, Any] | None = None
    created: bool = False
