"""HTTP routes of the web domain: overview (``/``), voices (``/voices``), one voice.

Every page reads the shared filter bar (``voxloop.web.service.request_filters``) and
downloads any of its tables with ``?format=csv|xlsx&table=NAME`` (``voxloop.web.export``).
"""

from __future__ import annotations

from dataclasses import fields as dataclass_fields
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from voxloop.act.access import Principal
from voxloop.api.service import get_settings, require_page_login
from voxloop.config import Settings
from voxloop.errors import UnusableInputError
from voxloop.web import charts
from voxloop.web.export import audited_export, export_format, export_table
from voxloop.web.queries import (
    VOICE_EXPORT_COLUMNS,
    facets,
    iter_voices,
    list_voices,
    overview,
    voice_detail,
)
from voxloop.web.schemas import (
    REGION_PARAMS,
    Overview,
    PageFilters,
    ReadingRow,
    Scope,
    VoiceFilters,
)
from voxloop.web.service import filter_bar, label, language, render, request_filters, translate

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
            hrefs.append(_url("/", **_keep(scope), province=name, days=scope.days))
        elif data.region_level == "city":
            hrefs.append(
                _url("/", **_keep(scope), province=scope.province, city=name, days=scope.days)
            )
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
                # The clicked bar names the scenario, replacing any scenario filter.
                _url("/voices", scenario=c, **_without(_voice_scope(data, scope), "scenario"))
                if c != "?"
                else None
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
        **_keep(scope),
        "province": scope.province,
        "city": scope.city,
        "district": scope.district,
    }
    if data.period_from is not None:
        params["from"] = data.period_from.isoformat()  # a period pill, as overview read it
    return params


def _without(params: dict[str, object], key: str) -> dict[str, object]:
    return {k: v for k, v in params.items() if k != key}


def _keep(scope: PageFilters) -> dict[str, str]:
    """Return the bar filters other than the region, which drill-down links carry along."""
    return {k: v for k, v in scope.bar().query().items() if k not in REGION_PARAMS}


def _url(path: str, **params: object) -> str:
    # Drill-down links start from a clean query string, not the current page's filters.
    query = urlencode({k: str(v) for k, v in params.items() if v not in (None, "")})
    return f"{path}?{query}" if query else path


def _bad_filter(request: Request, template: str, error: str, ctx: dict[str, Any]) -> HTMLResponse:
    response = render(request, template, {**ctx, "error": error})
    response.status_code = 422
    return response


@router.get("/", response_class=HTMLResponse, response_model=None)
def overview_page(
    request: Request,
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(require_page_login),
) -> Response:
    """Show the overview dashboard: volumes, regions, scenarios, sentiment, latest voices."""
    lang = language(request)
    bar = filter_bar(request, principal)
    try:
        scope: Scope = request_filters(request, principal, Scope)
        fmt = export_format(request)
    except UnusableInputError as exc:
        return _bad_filter(request, "web/overview.html", str(exc), {"data": Overview(), "bar": bar})
    data = overview(settings=settings, scope=scope)
    if fmt is not None:
        return _overview_export(request, principal, data, scope, fmt, lang)
    ctx: dict[str, Any] = {"data": data, "scope": scope, "error": None, "bar": bar}
    if data.kpis.voices:
        ctx.update(_overview_charts(data, scope=scope, lang=lang))
    return render(request, "web/overview.html", ctx)


OVERVIEW_TABLES = ("regions", "channels", "scenarios", "latest")


def _overview_export(
    request: Request, principal: Principal, data: Overview, scope: Scope, fmt: Any, lang: str
) -> Response:
    table = export_table(request, OVERVIEW_TABLES)
    header: list[str]
    rows: list[tuple[object, ...]]
    if table == "regions":
        header = [data.region_level, "voices", "share"]
        total = data.kpis.voices or 1
        rows = [(name, n, round(n / total, 4)) for name, n in data.by_region]
    elif table == "channels":
        header = [data.bucket, "channel", "voices"]
        rows = [(b, ch, n) for ch, points in data.by_channel.items() for b, n in points]
        rows.sort(key=lambda r: (str(r[0]), str(r[1])))
    elif table == "scenarios":
        header = ["scenario", "name", "negative", "neutral", "positive", "voices"]
        rows = [
            (
                code,
                label("scenario", code, lang) if code != "?" else "",
                cells.get("negative", 0),
                cells.get("neutral", 0),
                cells.get("positive", 0),
                sum(cells.values()),
            )
            for code, cells in data.by_scenario.items()
        ]
    else:
        header = list(VOICE_EXPORT_COLUMNS)
        rows = [_voice_cells(row) for row in data.latest]
    return audited_export(
        request,
        principal=principal,
        fmt=fmt,
        table=f"overview.{table}",
        header=header,
        rows=rows,
        filters=scope.model_dump(mode="json", by_alias=True, exclude_defaults=True),
    )


def _voice_cells(row: Any) -> tuple[object, ...]:
    return tuple(getattr(row, name) for name in VOICE_EXPORT_COLUMNS)


@router.get("/voices", response_class=HTMLResponse, response_model=None)
def voices_page(
    request: Request,
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(require_page_login),
) -> Response:
    """List voices with filters and paging, each with its latest reading and confidence.

    ``?format=csv|xlsx`` downloads every matching voice (all pages), streamed.
    """
    bar = filter_bar(request, principal, extra=("kind", "q", "review"))
    try:
        filters: VoiceFilters = request_filters(request, principal, VoiceFilters)
        fmt = export_format(request)
        error = None
    except UnusableInputError as exc:
        filters, fmt, error = VoiceFilters(), None, str(exc)
    if fmt is not None:
        export_table(request, ("voices",))
        return audited_export(
            request,
            principal=principal,
            fmt=fmt,
            table="voices",
            header=VOICE_EXPORT_COLUMNS,
            rows=iter_voices(settings=settings, filters=filters),
            filters=filters.model_dump(
                mode="json", by_alias=True, exclude_defaults=True, exclude={"page", "per_page"}
            ),
        )
    page = list_voices(settings=settings, filters=filters)
    response = render(
        request,
        "web/voices.html",
        {"filters": filters, "page": page, "facets": _kinds(settings), "error": error, "bar": bar},
    )
    if error:
        response.status_code = 422
    return response


def _kinds(settings: Settings) -> list[str]:
    return facets(settings=settings, province=None, city=None).kinds


@router.get("/voices/{voice_id:path}", response_class=HTMLResponse, response_model=None)
def voice_page(
    voice_id: str,
    request: Request,
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(require_page_login),
) -> Response:
    """Show one voice: masked text, metadata, attributes and every reading of it."""
    detail = voice_detail(settings=settings, voice_id=voice_id)
    if detail is not None and not principal.sees(detail.voice.province, detail.voice.city):
        detail = None  # outside the caller's region: answer as if it did not exist
    fmt = export_format(request)
    if fmt is not None and detail is not None:
        export_table(request, ("readings",))
        fields = [f.name for f in dataclass_fields(ReadingRow)]
        return audited_export(
            request,
            principal=principal,
            fmt=fmt,
            table="voice.readings",
            header=["voice_id", *fields],
            rows=[
                (
                    voice_id,
                    *(
                        ",".join(v) if isinstance(v, list) else v
                        for v in (getattr(r, f) for f in fields)
                    ),
                )
                for r in detail.readings
            ],
            filters={"voice_id": voice_id},
        )
    bar = filter_bar(request, principal, action="/voices")
    response = render(
        request, "web/voice.html", {"detail": detail, "voice_id": voice_id, "bar": bar}
    )
    if detail is None:
        response.status_code = 404
    return response


@router.get("/filters/regions")
def filter_regions(
    request: Request,
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(require_page_login),
    province: str | None = Query(default=None, max_length=100),
    city: str | None = Query(default=None, max_length=100),
) -> dict[str, list[str]]:
    """Return the cities of ``province`` and the districts of ``city`` (the bar's cascade)."""
    if principal.province is not None and province not in (None, "", principal.province):
        return {"cities": [], "districts": []}
    if principal.city is not None and city not in (None, "", principal.city):
        return {"cities": [], "districts": []}
    found = facets(settings=settings, province=province or None, city=city or None, kinds=False)
    cities = [principal.city] if principal.city else found.cities
    return {"cities": cities, "districts": found.districts}
