"""Request bodies of the detect API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AlertTransition(BaseModel):
    """Change an alert's state."""

    model_config = ConfigDict(extra="forbid")

    state: Literal["open", "acknowledged", "closed"]


class MergeRequest(BaseModel):
    """Merge problems into the target problem."""

    model_config = ConfigDict(extra="forbid")

    sources: list[str] = Field(min_length=1, max_length=100)


class SplitRequest(BaseModel):
    """Move voices out of a problem into a new one."""

    model_config = ConfigDict(extra="forbid")

    voice_ids: list[str] = Field(min_length=1, max_length=10_000)
