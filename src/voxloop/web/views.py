"""HTTP routes of the web domain: overview (``/``), voices (``/voices``), one voice."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from voxloop.act.access import Principal
from voxloop.api.service import get_settings, require_page_login
from voxloop.config import Settings
from voxloop.errors import PermissionDeniedError, UnusableInputError
from voxloop.web import charts
from voxloop.web.queries import facets, list_voices, overview, voice_detail
from voxloop.web.schemas import Overview, Scope, VoiceFilters, parse_query
from voxloop.web.service import label, language, render, translate

router = APIRouter(include_in_schema=False)


def _overview_charts(data: Overview, *, scope: Scope, lang: str) -> dict[str, Any]:
    def t(key: str) -> str:
        return translate(key, lang)

    out: dict[str, Any] = {}
    out["channel_chart"] = charts.line_chart(
        {label("channel", ch, lang): pts for ch, pts in data.by_channel.items()},
        title=t("web.chart.by_channel"),
        y_label=t("web.voices_per_" + data.bucket),
        empty_message=t("web.no_data"),
        # Roughly as tall as the region card beside it (bars plus trend table).
        height=max(280, min(520, 40 + 22 * len(data.by_region) + 30 * len(data.region_trend))),
        colors={label("channel", "other", lang): charts.OTHER_COLOR},
    )
    hrefs: list[str | None] = []
    for name, _ in data.by_region:
        if name is None:
            hrefs.append(None)
        elif data.region_level == "province":
            hrefs.append(_url("/", province=name, days=scope.days))
        elif data.region_level == "city":
            hrefs.append(_url("/", province=scope.province, city=name, days=scope.days))
        else:
            hrefs.append(_url("/voices", **{**_voice_scope(data, scope), "district": name}))
    out["region_chart"] = charts.bar_chart(
        [name if name is not None else t("web.unknown") for name, _ in data.by_region],
        [n for _, n in data.by_region],
        title=t(f"web.chart.by_{data.region_level}"),
        hrefs=hrefs,
        empty_message=t("web.no_data"),
        width=520,
    )
    out["voices_link"] = _url("/voices", **_voice_scope(data, scope))
    out["region_sparks"] = {
        name: charts.sparkline(values, title=t("web.trend"), width=110, height=24)
        for name, values in data.region_trend.items()
    }
    if data.has_readings and data.by_scenario:
        codes = list(data.by_scenario)
        out["scenario_chart"] = charts.bar_chart(
            [f"{code} {label('scenario', code, lang)}" if code != "?" else "?" for code in codes],
            {
                label("sentiment", s, lang): [data.by_scenario[c].get(s, 0) for c in codes]
                for s in ("negative", "neutral", "positive")
            },
            title=t("web.chart.by_scenario"),
            stacked=True,
            hrefs=[
                _url("/voices", scenario=c, **_voice_scope(data, scope)) if c != "?" else None
                for c in codes
            ],
            colors={label("sentiment", k, lang): v for k, v in charts.SENTIMENT_COLORS.items()},
            width=560,
        )
    if data.has_readings and data.sentiment_trend:
        out["sentiment_chart"] = charts.line_chart(
            {label("sentiment", s, lang): pts for s, pts in data.sentiment_trend.items()},
            title=t("web.chart.sentiment_trend"),
            y_label=t("web.voices_per_" + data.bucket),
            colors={label("sentiment", k, lang): v for k, v in charts.SENTIMENT_COLORS.items()},
            # About as tall as the scenario bars beside it.
            height=max(280, min(480, 60 + 24 * len(data.by_scenario))),
        )
    return out


def _voice_scope(data: Overview, scope: Scope) -> dict[str, object]:
    """Return the voices-page filters that reproduce the overview's region and period."""
    params: dict[str, object] = {
        "province": scope.province,
        "city": scope.city,
        "district": scope.district,
    }
    if scope.days and data.kpis.last_at is not None:
        params["from"] = (data.kpis.last_at - timedelta(days=scope.days)).date().isoformat()
    return params


def _url(path: str, **params: object) -> str:
    # Drill-down links start from a clean query string, not the current page's filters.
    query = urlencode({k: str(v) for k, v in params.items() if v not in (None, "")})
    return f"{path}?{query}" if query else path


def _scoped_query(request: Request, principal: Principal) -> dict[str, str]:
    """Return the query parameters pinned to the caller's region scope (403 outside it)."""
    query = dict(request.query_params)
    for name, scope in (("province", principal.province), ("city", principal.city)):
        if scope is None:
            continue
        if query.get(name) not in (None, "", scope):
            raise PermissionDeniedError(f"{name} {query[name]!r} is outside your region scope")
        query[name] = scope
    return query


@router.get("/", response_class=HTMLResponse)
def overview_page(
    request: Request,
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(require_page_login),
) -> HTMLResponse:
    """Show the overview dashboard: volumes, regions, scenarios, sentiment, latest voices."""
    lang = language(request)
    try:
        scope: Scope = parse_query(Scope, _scoped_query(request, principal))
    except UnusableInputError as exc:
        response = render(request, "web/overview.html", {"error": str(exc), "data": Overview()})
        response.status_code = 422
        return response
    data = overview(settings=settings, scope=scope)
    ctx: dict[str, Any] = {"data": data, "scope": scope, "error": None}
    if data.kpis.voices:
        ctx.update(_overview_charts(data, scope=scope, lang=lang))
    return render(request, "web/overview.html", ctx)


@router.get("/voices", response_class=HTMLResponse)
def voices_page(
    request: Request,
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(require_page_login),
) -> HTMLResponse:
    """List voices with filters and paging, each with its latest reading and confidence."""
    try:
        filters: VoiceFilters = parse_query(VoiceFilters, _scoped_query(request, principal))
        error = None
    except UnusableInputError as exc:
        filters, error = VoiceFilters(), str(exc)
    page = list_voices(settings=settings, filters=filters)
    facet = facets(settings=settings, province=filters.province, city=filters.city)
    response = render(
        request,
        "web/voices.html",
        {"filters": filters, "page": page, "facets": facet, "error": error},
    )
    if error:
        response.status_code = 422
    return response


@router.get("/voices/{voice_id:path}", response_class=HTMLResponse)
def voice_page(
    voice_id: str,
    request: Request,
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(require_page_login),
) -> HTMLResponse:
    """Show one voice: masked text, metadata, attributes and every reading of it."""
    detail = voice_detail(settings=settings, voice_id=voice_id)
    if detail is not None and not principal.sees(detail.voice.province, detail.voice.city):
        detail = None  # outside the caller's region: answer as if it did not exist
    response = render(request, "web/voice.html", {"detail": detail, "voice_id": voice_id})
    if detail is None:
        response.status_code = 404
    return response
