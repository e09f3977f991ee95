"""HTTP routes of call summaries: ``POST /api/v1/assist/summary`` (router) and no pages yet."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from voxloop.act.access import Principal
from voxloop.api.service import get_principal, get_session, get_settings
from voxloop.assist.summary import summary_for_request
from voxloop.assist.summary_schemas import SummaryRequest, SummaryResponse
from voxloop.config import Settings

router = APIRouter(tags=["assist"])
pages = APIRouter(include_in_schema=False)


@router.post("/assist/summary", response_model=SummaryResponse)
def post_summary(
    body: SummaryRequest,
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
    settings: Settings = Depends(get_settings),
) -> SummaryResponse:
    """Summarise a finished conversation and pre-fill its work order; ``create`` files it."""
    return summary_for_request(
        settings=settings, request=body, principal=principal, session=session
    )
