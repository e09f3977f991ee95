"""HTTP routes of the monthly report: JSON API (``router``, under /api/v1) and the page.

* ``GET /api/v1/reports`` lists the stored reports the caller may see;
* ``POST /api/v1/reports`` renders one now (``period``, ``region``, ``lang``, ``format``)
  and stores it; a regional user reports on their own region (default) or below it;
* ``GET /api/v1/reports/{id}/download`` returns the file (the page links here; the
  session cookie authenticates a browser);
* ``/reports`` (page): the list, a generate form and download links, zh-CN / en.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from voxloop.act.access import Principal
from voxloop.api.service import (
    get_principal,
    get_session,
    get_settings,
    require_page_login,
    require_permission,
)
from voxloop.config import Settings
from voxloop.errors import PermissionDeniedError, UnusableInputError
from voxloop.web import report, report_data
from voxloop.web.report_render import FORMATS, MissingFontError
from voxloop.web.service import LANGUAGES, language, render

router = APIRouter(tags=["reports"])
pages = APIRouter(include_in_schema=False)

READ = Depends(require_permission("read"))


def _out(entry: report.ReportEntry) -> dict[str, Any]:
    data = entry.model_dump(mode="json")
    data["download"] = f"/api/v1/reports/{entry.id}/download"
    data["filename"] = entry.filename
    return data


def _generate(
    *, settings: Settings, session: Session, principal: Principal, request: report.ReportRequest
) -> report.ReportEntry:
    try:
        return report.generate_report(
            settings=settings, session=session, principal=principal, request=request
        )
    except MissingFontError as exc:
        # The server lacks a system package: not the caller's fault, and not a crash.
        raise HTTPException(status_code=503, detail=str(exc)) from exc


@router.get("/reports")
def list_reports(
    principal: Principal = READ, settings: Settings = Depends(get_settings)
) -> dict[str, Any]:
    """List the stored reports inside the caller's region scope, newest first."""
    items = report.list_reports(settings=settings, principal=principal)
    return {"total": len(items), "items": [_out(e) for e in items]}


@router.post("/reports", status_code=201)
def create_report(
    data: report.ReportRequest,
    principal: Principal = READ,
    settings: Settings = Depends(get_settings),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Render a report of one month now (PDF or HTML) and store it."""
    entry = _generate(settings=settings, session=session, principal=principal, request=data)
    return _out(entry)


@router.get("/reports/{report_id}/download", response_model=None)
def download_report(
    report_id: str, principal: Principal = READ, settings: Settings = Depends(get_settings)
) -> FileResponse:
    """Return a stored report's file as an attachment."""
    entry, path = report.get_report(settings=settings, principal=principal, report_id=report_id)
    return FileResponse(
        path,
        media_type=report.MEDIA_TYPES[entry.format],
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(entry.filename)}"},
    )


# ---------------------------------------------------------------------------
# Page


def _page(
    request: Request,
    *,
    settings: Settings,
    principal: Principal,
    error: str | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    lang = language(request)
    periods = report_data.available_periods(settings=settings)
    created_id = request.query_params.get("created")
    entries = report.list_reports(settings=settings, principal=principal)
    created = next((e for e in entries if e.id == created_id), None)
    if form is None and created is not None:
        # After generating, the form keeps the choices just made.
        form = {
            "period": created.period,
            "region": created.region or "",
            "lang": created.lang,
            "format": created.format,
        }
    from voxloop.web.queries import facets

    found = facets(settings=settings, province=principal.province, city=None)
    if principal.city:
        places = [f"{principal.province}/{principal.city}"]
    elif principal.province:
        places = [principal.province, *(f"{principal.province}/{c}" for c in found.cities)]
    else:
        places = found.provinces
    response = render(
        request,
        "web/reports.html",
        {
            "nav_path": "/reports",
            # The form below picks the month and region; the global filter bar would not
            # apply to a report.
            "bar": None,
            "entries": entries,
            "periods": periods,
            "languages": LANGUAGES,
            "formats": FORMATS,
            "scope": report_data.region_key(principal),
            "created": created,
            "places": places,
            "error": error,
            "form": form
            or {
                "period": periods[0] if periods else "",
                # A link from a filtered page (``?province=..&city=..``) preselects it.
                "region": report_data.region_key(principal)
                or "/".join(
                    v for v in (request.query_params.get(k) for k in ("province", "city")) if v
                ),
                "lang": lang,
                "format": "pdf",
            },
        },
    )
    response.status_code = status
    return response


@pages.get("/reports", response_class=HTMLResponse)
def reports_page(
    request: Request,
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(require_page_login),
) -> HTMLResponse:
    """Show the stored reports, a form to generate one and download links."""
    return _page(request, settings=settings, principal=principal)


@pages.post("/reports", response_class=HTMLResponse, response_model=None)
def reports_generate(
    request: Request,
    period: str = Form(""),
    region: str = Form(""),
    lang: str = Form("zh-CN"),
    format: str = Form("pdf"),
    settings: Settings = Depends(get_settings),
    session: Session = Depends(get_session),
    principal: Principal = Depends(require_page_login),
) -> Response:
    """Generate a report from the page's form, then show the list (post/redirect/get)."""
    form = {"period": period, "region": region, "lang": lang, "format": format}
    try:
        entry = report.generate_report(
            settings=settings,
            session=session,
            principal=principal,
            request=report.ReportRequest(
                period=period, region=region.strip() or None, lang=lang, format=format
            ),
        )
    except (UnusableInputError, MissingFontError) as exc:
        return _page(
            request, settings=settings, principal=principal, error=str(exc), form=form, status=422
        )
    except PermissionDeniedError as exc:
        return _page(
            request, settings=settings, principal=principal, error=str(exc), form=form, status=403
        )
    return RedirectResponse(f"/reports?created={entry.id}", status_code=303)


def include_routes(app: FastAPI) -> None:
    """Add the report API and page to ``app`` unless it already serves them."""
    paths = {getattr(r, "path", None) for r in app.router.routes}
    if "/api/v1/reports" not in paths:
        app.include_router(router, prefix="/api/v1", dependencies=[Depends(get_principal)])
    if "/reports" not in paths:
        app.include_router(pages)
