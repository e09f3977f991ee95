"""Pydantic shapes of the understand API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ReadingCorrection(BaseModel):
    """A human correction of a voice's reading; fields left out keep their current value."""

    model_config = ConfigDict(extra="forbid")

    scenario: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9_]*$")
    subcategory: str | None = Field(default=None, pattern=r"^[a-z0-9_]+$")
    intent: str | None = Field(default=None, pattern=r"^[a-z_]+$")
    sentiment: Literal["negative", "neutral", "positive"] | None = None
    emotion: Literal["anger", "fear", "sadness", "surprise", "joy", "neutral"] | None = None
    escalation_risk: bool | None = None


class Reading(BaseModel):
    """One reading of a voice, as stored in the ``readings`` lake table."""

    voice_id: str
    scenario: str | None
    subcategory: str | None
    scenario_confidence: float | None
    scenario_source: str
    intent: str | None
    sentiment: str | None
    sentiment_score: float | None
    emotion: str | None
    urgency: float | None
    escalation_risk: bool | None
    urgency_triggers: list[str] | None
    needs_review: bool | None
    model_version: str
    read_at: datetime
    corrected_fields: list[str] | None = None
