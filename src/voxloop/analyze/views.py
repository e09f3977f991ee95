"""HTTP routes of the analyze domain: JSON API (router, under /api/v1) and pages.

Region scope: drivers and segments follow the caller's region.  For a provincial (or city)
user they are computed on the survey responses of that region only — the drivers of
*their* customers' satisfaction, segments and base rate inside their region, the
drill-down starting below it — and cached per region like the national results (the
first request for a region computes it, at most the cost of the national analysis since
it reads the same responses and fits on fewer).  Asking for another region is refused
with 403.  A national user narrows the same way with ``province``/``city``/``district``;
``from``/``to`` (local days) and ``touchpoint`` restrict the responses further, as the
satisfaction page's filter bar does.  Journeys and churn work on individual customers
across every region and stay for national users (403 with an explanation).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from voxloop.act.access import Principal
from voxloop.analyze import service, wording
from voxloop.api.service import get_principal, get_session, get_settings, require_page_login
from voxloop.config import Settings
from voxloop.errors import PermissionDeniedError, UnusableInputError, VoxloopError

router = APIRouter(prefix="/analysis", tags=["analysis"])
pages = APIRouter()

SettingsDep = Annotated[Settings, Depends(get_settings)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]


def _scope(principal: Principal) -> dict[str, str]:
    """Return the caller's region as an analysis restriction (empty for national users)."""
    return {k: v for k, v in (("province", principal.province), ("city", principal.city)) if v}


def _region(
    principal: Principal,
    province: str | None = None,
    city: str | None = None,
    district: str | None = None,
) -> dict[str, str]:
    """Return the asked region (province/city/district) inside the caller's scope.

    The scope fills the levels the caller left empty; a level outside it is refused (403).
    """
    scope = _scope(principal)
    asked = {k: v for k, v in (("province", province), ("city", city), ("district", district)) if v}
    for level, value in scope.items():
        if asked.get(level, value) != value:
            raise PermissionDeniedError(f"{level} {asked[level]!r} is outside your region scope")
    return {**asked, **scope}


def _filter_params(
    date_from: date | None, date_to: date | None, touchpoint: str | None
) -> dict[str, Any]:
    # Only filters that are set join the cache key, so the unfiltered national request
    # keeps reusing the pipeline's precomputed result.
    out: dict[str, Any] = {}
    if date_from:
        out["from"] = date_from.isoformat()
    if date_to:
        out["to"] = date_to.isoformat()
    if touchpoint:
        out["touchpoint"] = touchpoint
    return out


FromQuery = Annotated[
    date | None, Query(alias="from", description="First local day (inclusive), YYYY-MM-DD.")
]
ToQuery = Annotated[
    date | None, Query(alias="to", description="Last local day (inclusive), YYYY-MM-DD.")
]
RegionQuery = Annotated[str | None, Query(max_length=100)]


def _check_dates(date_from: date | None, date_to: date | None) -> None:
    if date_from and date_to and date_from > date_to:
        raise UnusableInputError("'from' is after 'to'", loc=("query", "from"))


@router.get("/drivers")
def drivers(
    settings: SettingsDep,
    principal: PrincipalDep,
    outcome: str = "overall",
    touchpoint: str | None = None,
    province: RegionQuery = None,
    city: RegionQuery = None,
    district: RegionQuery = None,
    date_from: FromQuery = None,
    date_to: ToQuery = None,
) -> dict[str, Any]:
    """Key drivers of an outcome over the survey factor ratings of the caller's region."""
    _check_dates(date_from, date_to)
    region = _region(principal, province, city, district)
    params: dict[str, Any] = {"outcome": outcome, "touchpoint": touchpoint}
    if region:
        # National keys stay as they were, so the pipeline's precomputed result is reused.
        params["region"] = region
    params.update(_filter_params(date_from, date_to, None))
    return service.cached(
        settings=settings,
        name="drivers",
        params=params,
        compute=lambda: service.drivers_analysis(
            settings=settings,
            outcome=outcome,
            touchpoint=touchpoint,
            region=region or None,
            date_from=date_from,
            date_to=date_to,
        ),
    )


@router.get("/segments")
def segments(
    settings: SettingsDep,
    principal: PrincipalDep,
    outcome: str = "dissatisfied",
    province: RegionQuery = None,
    city: RegionQuery = None,
    district: RegionQuery = None,
    touchpoint: str | None = None,
    date_from: FromQuery = None,
    date_to: ToQuery = None,
) -> dict[str, Any]:
    """Dissatisfied segments inside a region and period, and the drill-down below the region.

    ``province`` / ``city`` / ``district`` (inside the caller's scope) restrict the rules,
    the base rate and the drill-down, which starts one level below them.
    """
    _check_dates(date_from, date_to)
    region = path = _region(principal, province, city, district)
    params: dict[str, Any] = {"outcome": outcome, **path}
    if region:
        params["region"] = region
    params.update(_filter_params(date_from, date_to, touchpoint))
    result = service.cached(
        settings=settings,
        name="segments",
        params=params,
        compute=lambda: service.segments_analysis(
            settings=settings,
            outcome=outcome,
            path=path,
            region=region or None,
            date_from=date_from,
            date_to=date_to,
            touchpoint=touchpoint,
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


#: Filter-bar fields that have no meaning for survey responses (a rating has a touchpoint,
#: not a channel, scenario or sentiment): the satisfaction page shows them disabled.
NOT_SURVEY_FIELDS = ("channel", "scenario", "sentiment")


@pages.get("/satisfaction", response_class=HTMLResponse)
def satisfaction_page(
    request: Request,
    settings: SettingsDep,
    principal: Annotated[Principal, Depends(require_page_login)],
) -> HTMLResponse:
    """Satisfaction dashboard: drivers, short boards, segments with drill-down, churn risk.

    The filter bar's dates and region restrict drivers and segments (and the churn list
    to customers of the region); ``touchpoint`` is the page's own filter.
    """
    from voxloop.ingest.schemas import Touchpoint
    from voxloop.web import charts
    from voxloop.web.schemas import PageFilters
    from voxloop.web.service import (
        filter_bar,
        language,
        render,
        request_filters,
        translate,
        url_with,
    )

    lang = language(request)

    def factor_label(name: str) -> str:
        # Survey factors have UI names; other drivers (attributes) keep their own name.
        label = translate(f"factor.{name}", lang)
        return name if label == f"factor.{name}" else label

    region = _scope(principal)
    # 403 outside the scope, 422 for an invalid value.
    filters: PageFilters = request_filters(request, principal)
    raw_touchpoint = request.query_params.get("touchpoint") or None
    touchpoints = [t.value for t in Touchpoint]
    if raw_touchpoint is not None and raw_touchpoint not in touchpoints:
        raise UnusableInputError(
            f"touchpoint must be one of {', '.join(touchpoints)}, not {raw_touchpoint!r}",
            loc=("query", "touchpoint"),
        )
    touchpoint = raw_touchpoint
    province, city, district = filters.province, filters.city, filters.district
    asked = _region(principal, province, city, district)
    ignored = [f for f in NOT_SURVEY_FIELDS if getattr(filters, f)]
    bar = filter_bar(request, principal, extra=("touchpoint",))
    if bar is not None:
        bar["channels"] = []
        bar["scenarios"] = []
    scope: dict[str, Any] = {
        "touchpoint": touchpoint,
        "province": province,
        "city": city,
        "district": district,
        "date_from": filters.date_from,
        "date_to": filters.date_to,
    }
    drv, drv_error = _try(lambda: drivers(settings, principal, **scope))
    seg, seg_error = _try(lambda: segments(settings, principal, **scope))
    chn, chn_error = _try(lambda: churn(settings, principal, limit=1000))
    if chn is not None:
        chn = {**chn, "at_risk": _at_risk_in(settings, chn["at_risk"], asked, limit=20)}
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
            url_with(request, **{level: r["value"]}) if level in service.REGION_LEVELS else None
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
            "province": province or region.get("province"),
            "city": city or region.get("city"),
            "district": district,
            "up_url": (
                url_with(request, district=None)
                if district
                else url_with(request, city=None, district=None)
                if city
                else url_with(request, province=None, city=None, district=None)
            ),
            "at_scope_root": (
                (province or region.get("province"), city or region.get("city"), district)
                == (region.get("province"), region.get("city"), None)
            ),
            "region": asked,
            "bar": bar,
            "touchpoint": touchpoint,
            "touchpoints": touchpoints,
            "ignored_filters": ignored,
            "period": filters.date_from or filters.date_to,
        },
    )


def _at_risk_in(
    settings: Settings, rows: list[dict[str, Any]], region: dict[str, str], *, limit: int
) -> list[dict[str, Any]]:
    """Keep the at-risk customers whose profile lies in ``region`` (all when empty)."""
    if not region or not rows:
        return rows[:limit]
    places = service.customer_regions(settings=settings, ids=[str(r["id"]) for r in rows])
    kept = [
        r for r in rows if all(places.get(str(r["id"]), {}).get(k) == v for k, v in region.items())
    ]
    return kept[:limit]
