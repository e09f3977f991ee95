"""HTTP routes of the understand domain: JSON API (router, under /api/v1) and pages."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from voxloop.act.access import Principal
from voxloop.api.service import get_settings, require_page_login
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


#: Downloadable tables of the understanding page (``?format=csv|xlsx&table=NAME``).
READING_TABLES = ("scenarios", "sources", "sentiments", "review", "escalations")


@pages.get("/understand", response_class=HTMLResponse, response_model=None)
def readings_page(
    request: Request,
    settings: SettingsDep,
    principal: Annotated[Principal, Depends(require_page_login)],
) -> Response:
    """Show how voices were read: scenarios, sources, review queue (filter bar, region scope)."""
    from voxloop.errors import UnusableInputError
    from voxloop.web.export import audited_export, export_format, export_table
    from voxloop.web.queries import readings_summary
    from voxloop.web.schemas import PageFilters
    from voxloop.web.service import filter_bar, render, request_filters

    bar = filter_bar(request, principal)
    try:
        filters = request_filters(request, principal, PageFilters)
        fmt = export_format(request)
    except UnusableInputError as exc:
        response = render(
            request, "understand/readings.html", {"total": 0, "error": str(exc), "bar": bar}
        )
        response.status_code = 422
        return response
    summary = readings_summary(settings=settings, filters=filters)
    if fmt is not None:
        table = export_table(request, READING_TABLES)
        rows: list[tuple[object, ...]]
        if table in ("review", "escalations"):
            header = ["voice_id", "scenario", "confidence", "urgency", "text"]
            rows = [tuple(r[k] for k in header) for r in summary[table]]
        elif table == "scenarios":
            header = ["scenario", "zh", "en", "voices"]
            rows = [(r["key"], r["zh"], r["en"], r["n"]) for r in summary[table]]
        else:
            header = [table.removesuffix("s"), "voices"]
            rows = [(r["key"], r["n"]) for r in summary[table]]
        return audited_export(
            request,
            principal=principal,
            fmt=fmt,
            table=f"understand.{table}",
            header=header,
            rows=rows,
            filters=filters.model_dump(mode="json", by_alias=True, exclude_defaults=True),
        )
    return render(request, "understand/readings.html", {**summary, "bar": bar, "error": None})
