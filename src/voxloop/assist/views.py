"""HTTP routes of the assist domain: JSON API (router, under /api/v1) and pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from voxloop.api.service import get_settings
from voxloop.assist import kb
from voxloop.assist.schemas import Answer, AnswerRequest
from voxloop.config import Settings

router = APIRouter(tags=["assist"])
pages = APIRouter()

SettingsDep = Annotated[Settings, Depends(get_settings)]


@router.post("/assist/answer", response_model=Answer)
def post_answer(body: AnswerRequest, settings: SettingsDep) -> Answer:
    """Answer a question from the knowledge base, quoting the entry, or route to a human."""
    return kb.answer_question(settings=settings, request=body)
