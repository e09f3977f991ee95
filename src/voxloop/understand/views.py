"""HTTP routes of the understand domain: JSON API (router, under /api/v1) and pages."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from voxloop.api.service import get_settings
from voxloop.config import Settings
from voxloop.understand import service
from voxloop.understand.schemas import Reading, ReadingCorrection

router = APIRouter(tags=["understand"])
pages = APIRouter()

SettingsDep = Annotated[Settings, Depends(get_settings)]


@router.get("/voices/{voice_id}/reading", response_model=Reading)
def get_reading(voice_id: str, settings: SettingsDep) -> dict[str, Any]:
    """Return the latest reading of a voice."""
    return service.get_reading(settings=settings, voice_id=voice_id)


@router.patch("/voices/{voice_id}/reading", response_model=Reading)
def patch_reading(voice_id: str, body: ReadingCorrection, settings: SettingsDep) -> dict[str, Any]:
    """Store a human correction of a voice's reading."""
    return service.correct_reading(settings=settings, voice_id=voice_id, correction=body)


@pages.get("/understand", response_class=HTMLResponse)
def readings_page(request: Request, settings: SettingsDep) -> HTMLResponse:
    """Show how voices were read: scenarios, sources, review queue."""
    from voxloop.web.service import render

    return render(request, "understand/readings.html", service.overview(settings=settings))
