"""HTTP routes of the analyze domain: JSON API (router, under /api/v1) and pages.

Region scope: drivers and segments follow the caller's region.  For a provincial (or city)
user they are computed on the survey responses of that region only — the drivers of
*their* customers' satisfaction, segments and base rate inside their region, the
drill-down starting below it — and cached per region like the national results (the
first request for a region computes it, at most the cost of the national analysis since
it reads the same responses and fits on fewer).  Asking for another region is refused
with 403.  Journeys and churn work on individual customers across every region and stay
for national users (403 with an explanation).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from voxloop.act.access import Principal
from voxloop.analyze import service, wording
from voxloop.api.service import get_principal, get_session, get_settings, require_page_login
from voxloop.config import Settings
from voxloop.errors import PermissionDeniedError, VoxloopError

router = APIRouter(prefix="/analysis", tags=["analysis"])
pages = APIRouter()

SettingsDep = Annotated[Settings, Depends(get_settings)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]


def _scope(principal: Principal) -> dict[str, str]:
    """Return the caller's region as an analysis restriction (empty for national users)."""
    return {k: v for k, v in (("province", principal.province), ("city", principal.city)) if v}


@router.get("/drivers")
def drivers(
    settings: SettingsDep,
    principal: PrincipalDep,
    outcome: str = "overall",
    touchpoint: str | None = None,
) -> dict[str, Any]:
    """Key drivers of an outcome over the survey factor ratings of the caller's region."""
    region = _scope(principal)
    params: dict[str, Any] = {"outcome": outcome, "touchpoint": touchpoint}
    if region:
        # National keys stay as they were, so the pipeline's precomputed result is reused.
        params["region"] = region
    return service.cached(
        settings=settings,
        name="drivers",
        params=params,
        compute=lambda: service.drivers_analysis(
            settings=settings, outcome=outcome, touchpoint=touchpoint, region=region or None
        ),
    )


@router.get("/segments")
def segments(
    settings: SettingsDep,
    principal: PrincipalDep,
    outcome: str = "dissatisfied",
    province: str | None = None,
    city: str | None = None,
) -> dict[str, Any]:
    """Dissatisfied segments and the region drill-down below ``province`` / ``city``."""
    region = _scope(principal)
    path = {k: v for k, v in (("province", province), ("city", city)) if v}
    for level, value in region.items():
        if path.get(level, value) != value:
            raise PermissionDeniedError(f"{level} {path[level]!r} is outside your region scope")
    path.update(region)
    params: dict[str, Any] = {"outcome": outcome, **path}
    if region:
        params["region"] = region
    result = service.cached(
        settings=settings,
        name="segments",
        params=params,
        compute=lambda: service.segments_analysis(
            settings=settings, outcome=outcome, path=path, region=region or None
        ),
    )
    # Worded at answer time, so cached results (and older caches) read the same.
    return wording.word_segments(result)


def _national(principal: Principal) -> None:
    # Customer-level results span every region; regional users get them only once the
    # analyses are computed per region scope.
    if principal.province is not None:
        raise PermissionDeniedError("customer-level analyses are for national (unscoped) users")


@router.get("/journeys")
def journeys(
    settings: SettingsDep,
    principal: PrincipalDep,
    session: Annotated[Session, Depends(get_session)],
    customers: Annotated[str | None, Query(description="Comma-separated customer ids.")] = None,
    segment: Annotated[int | None, Query(description="Segment rule number, 0 = top.")] = None,
    days: Annotated[float, Query(gt=0, le=3650)] = 30.0,
) -> dict[str, Any]:
    """Event sequences before dissatisfaction compared with satisfied customers."""
    from voxloop.act.service import record_access

    _national(principal)
    ids = [c.strip() for c in customers.split(",") if c.strip()] if customers else None
    if ids:
        record_access(
            session=session, principal=principal, customer_ids=ids, purpose="journey analysis"
        )
        session.commit()
    return service.cached(
        settings=settings,
        name="journeys",
        params={"customers": customers, "segment": segment, "days": days},
        compute=lambda: service.journeys_analysis(
            settings=settings, customer_ids=ids, days=days, segment=segment
        ),
    )


@router.get("/churn")
def churn(
    settings: SettingsDep, principal: PrincipalDep, limit: int = Query(50, ge=1, le=1000)
) -> dict[str, Any]:
    """Churn-risk validation and the ranked list of active customers with reasons."""
    _national(principal)
    # One cached ranking of the top 1000 serves every limit.
    result = service.cached(
        settings=settings,
        name="churn",
        params={},
        compute=lambda: service.churn_analysis(settings=settings, limit=1000),
    )
    out = {k: v for k, v in result.items() if k != "oof_risk"}
    out["at_risk"] = result["at_risk"][:limit]
    return wording.word_churn(out)


def _try(compute: Any) -> tuple[dict[str, Any] | None, str | None]:
    try:
        return compute(), None
    except VoxloopError as exc:
        return None, str(exc)


@pages.get("/satisfaction", response_class=HTMLResponse)
def satisfaction_page(
    request: Request,
    settings: SettingsDep,
    principal: Annotated[Principal, Depends(require_page_login)],
    province: str | None = None,
    city: str | None = None,
) -> HTMLResponse:
    """Satisfaction dashboard: drivers, short boards, segments with drill-down, churn risk."""
    from voxloop.web import charts
    from voxloop.web.service import language, render, translate, url_with

    lang = language(request)

    def factor_label(name: str) -> str:
        # Survey factors have UI names; other drivers (attributes) keep their own name.
        label = translate(f"factor.{name}", lang)
        return name if label == f"factor.{name}" else label

    region = _scope(principal)
    for level, value in (("province", province), ("city", city)):
        if value and region.get(level, value) != value:
            raise PermissionDeniedError(f"{level} {value!r} is outside your region scope")
    # A regional user's page starts at (and cannot go above) their own region.
    province, city = province or region.get("province"), city or region.get("city")
    drv, drv_error = _try(lambda: drivers(settings, principal))
    seg, seg_error = _try(lambda: segments(settings, principal, province=province, city=city))
    chn, chn_error = _try(lambda: churn(settings, principal, limit=20))
    driver_chart = quadrant_chart = drill_chart = None
    if drv:
        items = drv["drivers"]
        driver_chart = charts.bar_chart(
            [factor_label(d["driver"]) for d in items],
            [round(100 * d["share"], 1) for d in items],
            title=translate("analyze.chart.drivers", lang),
        )
        quads = drv["quadrants"]
        if quads:
            imp = [q["importance"] for q in quads]
            perf = [q["performance"] for q in quads]
            quadrant_chart = charts.scatter_quadrant(
                [(factor_label(q["name"]), q["importance"], q["performance"]) for q in quads],
                x_label=translate("analyze.importance", lang),
                y_label=translate("analyze.performance", lang),
                x_split=sum(imp) / len(imp),
                y_split=sum(perf) / len(perf),
                title=translate("analyze.chart.quadrant", lang),
                quadrant_labels=(
                    translate("analyze.quadrant.maintain", lang),
                    translate("analyze.quadrant.strength", lang),
                    translate("analyze.quadrant.low_priority", lang),
                    translate("analyze.quadrant.short_board", lang),
                ),
            )
    if seg and seg["drill_down"]:
        rows = seg["drill_down"]
        level = rows[0]["level"]
        hrefs: list[str | None] = [
            url_with(request, **{level: r["value"]}) if level in ("province", "city") else None
            for r in rows
        ]
        drill_chart = charts.bar_chart(
            [r["value"] for r in rows],
            [round(100 * r["rate"], 1) for r in rows],
            title=translate("analyze.chart.drill", lang),
            hrefs=hrefs,
        )
    return render(
        request,
        "analyze/satisfaction.html",
        {
            "nav_path": "/satisfaction",
            "factor_label": factor_label,
            "drivers": drv,
            "drivers_error": drv_error,
            "segments": seg,
            "segments_error": seg_error,
            "churn": chn,
            "churn_error": chn_error,
            "driver_chart": driver_chart,
            "quadrant_chart": quadrant_chart,
            "drill_chart": drill_chart,
            "province": province,
            "city": city,
            "up_url": url_with(request, city=None) if city else url_with(request, province=None),
            "at_scope_root": (province, city) == (region.get("province"), region.get("city")),
            "region": region,
        },
    )
