"""Assist: knowledge base answers, agent assist, call summaries and quality inspection."""

from __future__ import annotations

from typing import Any

from voxloop.config import Settings


def assist_stage(*, settings: Settings) -> dict[str, Any]:
    """Inspect the quality of every new conversation (pipeline stage)."""
    return {}
