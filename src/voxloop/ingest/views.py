"""HTTP routes of the ingest domain: JSON API (router, under /api/v1) and pages."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import PlainTextResponse

from voxloop.act.access import Principal
from voxloop.api.service import get_principal, get_settings, require_permission
from voxloop.config import Settings
from voxloop.errors import PermissionDeniedError, UnusableInputError
from voxloop.ingest.schemas import RecordKind

router = APIRouter()
pages = APIRouter()

#: Most records one push may carry; larger loads belong in files.
MAX_PUSH = 100_000


@router.post("/ingest/{kind}", tags=["ingest"])
def push_records(
    kind: RecordKind,
    request: Request,
    records: Annotated[list[dict[str, Any]], Body(max_length=MAX_PUSH)],
    settings: Annotated[Settings, Depends(get_settings)],
    principal: Annotated[Principal, Depends(require_permission("write"))],
) -> dict[str, Any]:
    """Ingest a JSON list of records; return the counts and the quarantined rows' reasons."""
    from voxloop.ingest.service import ingest_records, list_quarantine

    if principal.province is not None:
        # A regional user may only push records of its own region (flat or nested region).
        for row, record in enumerate(records, start=1):
            nested = record.get("region")
            region: dict[str, Any] = nested if isinstance(nested, dict) else record
            if not principal.sees(region.get("province"), region.get("city")):
                raise PermissionDeniedError(
                    f"record {row}: region {region.get('province')!r}/{region.get('city')!r} "
                    "is outside your region scope",
                    loc=("body", row - 1, "province"),
                )

    try:
        result = ingest_records(
            settings=settings, kind=kind, records=records, engine=request.app.state.engine
        )
    except UnusableInputError as exc:
        # The records as a whole cannot be read (unknown columns): the body is the field.
        exc.loc = exc.loc or ("body",)
        raise
    scheduled = bool(result.stored) and settings.stages_after_push
    if scheduled:
        request.app.state.stages.request()
    errors: list[dict[str, Any]] = []
    if result.quarantined and result.batch_id:
        _, rows = list_quarantine(settings=settings, limit=100, batch_id=result.batch_id)
        errors = [
            {"row": r["source_row"], "field": r["field"], "reason": r["reason"]}
            for r in sorted(rows, key=lambda r: r["source_row"] or 0)
        ]
    return {
        "read": result.read,
        "stored": result.stored,
        "quarantined": result.quarantined,
        "duplicates": result.duplicates,
        "batch_id": result.batch_id,
        "errors": errors,
        "stages_scheduled": scheduled,
    }


@router.get("/ingest/stages", tags=["ingest"])
def stage_status(
    request: Request,
    principal: Annotated[Principal, Depends(require_permission("read"))],
) -> dict[str, Any]:
    """Report the background post-ingest runs started by pushes."""
    status: dict[str, Any] = request.app.state.stages.status()
    return status


@router.get("/metrics", tags=["ingest"], response_class=PlainTextResponse)
def metrics(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    principal: Annotated[Principal, Depends(require_permission("read"))],
) -> PlainTextResponse:
    """Expose broker consumer and post-ingest stage counts in Prometheus text format."""
    from voxloop.ingest.broker import load_stats, prometheus_text

    stages: dict[str, Any] = request.app.state.stages.status()
    text = prometheus_text(load_stats(settings)) + (
        "# HELP voxloop_stage_runs_total Post-ingest stage runs started by pushes.\n"
        "# TYPE voxloop_stage_runs_total counter\n"
        f"voxloop_stage_runs_total {int(stages['runs'])}\n"
        "# HELP voxloop_stage_running Whether a post-ingest stage run is pending or running.\n"
        "# TYPE voxloop_stage_running gauge\n"
        f"voxloop_stage_running {int(bool(stages['running']))}\n"
    )
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/voices", tags=["ingest"])
def list_voices(
    settings: Annotated[Settings, Depends(get_settings)],
    principal: Annotated[Principal, Depends(get_principal)],
    start: Annotated[dt.datetime | None, Query(alias="from")] = None,
    end: Annotated[dt.datetime | None, Query(alias="to")] = None,
    province: str | None = None,
    city: str | None = None,
    district: str | None = None,
    channel: str | None = None,
    kind: str | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> dict[str, Any]:
    """List stored voices (newest first) filtered by time, region, channel, kind and text."""
    from voxloop.ingest.service import query_voices

    # A regional user sees only voices inside its region subtree.
    for name, asked, scope in (
        ("province", province, principal.province),
        ("city", city, principal.city),
    ):
        if scope is not None and asked not in (None, scope):
            raise PermissionDeniedError(f"{name} {asked!r} is outside your region scope")
    province = principal.province or province
    city = principal.city or city

    total, items = query_voices(
        settings=settings,
        start=start,
        end=end,
        province=province,
        city=city,
        district=district,
        channel=channel,
        kind=kind,
        q=q,
        limit=limit,
        offset=offset,
    )
    return {"total": total, "limit": limit, "offset": offset, "items": items}


@router.get("/quarantine", tags=["ingest"])
def list_quarantined(
    settings: Annotated[Settings, Depends(get_settings)],
    principal: Annotated[Principal, Depends(get_principal)],
    batch_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> dict[str, Any]:
    """List quarantined rows (newest first) with file, row, field, reason and raw record."""
    from voxloop.ingest.service import list_quarantine

    if principal.province is not None:
        # Quarantined rows failed validation, so their region cannot be trusted.
        raise PermissionDeniedError("quarantine is visible to national (unscoped) users only")

    total, items = list_quarantine(settings=settings, limit=limit, offset=offset, batch_id=batch_id)
    return {"total": total, "limit": limit, "offset": offset, "items": items}
