"""HTTP routes of quality inspection: JSON API (``router``, under /api/v1) and pages.

Every route follows the caller's region scope: scores are computed over the caller's
region only (asking for another region answers 403), and a conversation or hit outside
it answers 404, as if it did not exist. Judging hits needs the admin or supervisor role.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from voxloop.act.access import Principal
from voxloop.api.service import get_session, get_settings, require_page_login, require_permission
from voxloop.assist import qa
from voxloop.assist.qa import LabelRequest, MissedRequest, QaScope
from voxloop.config import Settings
from voxloop.errors import NotFoundError, PermissionDeniedError, UnusableInputError
from voxloop.web.schemas import PageFilters
from voxloop.web.service import filter_bar, language, render, request_filters

router = APIRouter(tags=["qa"])
pages = APIRouter(include_in_schema=False)

READ = Depends(require_permission("read"))
WRITE = Depends(require_permission("write"))
SETTINGS = Depends(get_settings)
SESSION = Depends(get_session)


def _scope(
    province: str | None = Query(default=None, max_length=100),
    city: str | None = Query(default=None, max_length=100),
    district: str | None = Query(default=None, max_length=100),
    channel: str | None = Query(default=None, max_length=100),
    date_from: date | None = Query(default=None, alias="from"),
    date_to: date | None = Query(default=None, alias="to"),
    days: int | None = Query(default=None, ge=1, le=3650),
    agent_id: str | None = Query(default=None, max_length=200),
    team: str | None = Query(default=None, max_length=200),
    rule_id: str | None = Query(default=None, max_length=64),
    limit: int = Query(default=50, ge=1, le=1000),
) -> QaScope:
    return QaScope(
        province=province or None,
        city=city or None,
        district=district or None,
        channel=channel or None,
        date_from=date_from,
        date_to=date_to,
        days=days,
        agent_id=agent_id or None,
        team=team or None,
        rule_id=rule_id or None,
        limit=limit,
    )


SCOPE = Depends(_scope)


@router.get("/qa/scores")
def get_scores(
    request: Request,
    scope: QaScope = SCOPE,
    principal: Principal = READ,
    session: Session = SESSION,
    settings: Settings = SETTINGS,
) -> dict[str, Any]:
    """Return QA scores per conversation, agent, team and rule in the caller's region."""
    return qa.qa_scores(
        settings=settings,
        scope=scope,
        principal=principal,
        session=session,
        lang=language(request),
    )


@router.get("/qa/conversations/{voice_id:path}")
def get_conversation(
    voice_id: str,
    request: Request,
    principal: Principal = READ,
    session: Session = SESSION,
    settings: Settings = SETTINGS,
) -> dict[str, Any]:
    """Return one inspected conversation with its turns, hits and labels."""
    return qa.qa_conversation(
        settings=settings,
        voice_id=voice_id,
        principal=principal,
        session=session,
        lang=language(request),
    )


@router.post("/qa/hits/{hit_id}/label")
def post_label(
    hit_id: str,
    body: LabelRequest,
    principal: Principal = WRITE,
    session: Session = SESSION,
    settings: Settings = SETTINGS,
) -> dict[str, Any]:
    """Confirm or overturn a hit (reviewers only); the change is audited."""
    return qa.label_hit(
        session=session, settings=settings, principal=principal, hit_id=hit_id, request=body
    )


@router.post("/qa/missed/{voice_id:path}")
def post_missed(
    voice_id: str,
    body: MissedRequest,
    principal: Principal = WRITE,
    session: Session = SESSION,
    settings: Settings = SETTINGS,
) -> dict[str, Any]:
    """Report a violation the engine missed on a conversation (reviewers only)."""
    return qa.label_missed(
        session=session, settings=settings, principal=principal, voice_id=voice_id, request=body
    )


# ---------------------------------------------------------------------------
# Pages


@pages.get("/qa", response_class=HTMLResponse)
def qa_page(
    request: Request,
    settings: Settings = SETTINGS,
    session: Session = SESSION,
    principal: Principal = Depends(require_page_login),
) -> HTMLResponse:
    """Show QA scores: summary, worst rules, agents, teams and the lowest-scored calls."""
    bar = filter_bar(request, principal, extra=PAGE_FIELDS)
    if bar is not None:
        # Scenario and sentiment are not QA dimensions: the bar shows them disabled.
        bar["scenarios"] = []
    error, status = None, 200
    scope = QaScope()
    data: dict[str, Any] = {"summary": {"inspected": 0}, "rules": [], "agents": []}
    data.update(teams=[], conversations=[])
    try:
        filters: PageFilters = request_filters(request, principal)
        extra = {k: request.query_params.get(k) or None for k in PAGE_FIELDS}
        scope = QaScope(
            province=filters.province,
            city=filters.city,
            district=filters.district,
            channel=filters.channel,
            date_from=filters.date_from,
            date_to=filters.date_to,
            **extra,
        )
        data = qa.qa_scores(
            settings=settings,
            scope=scope,
            principal=principal,
            session=session,
            lang=language(request),
        )
    except PermissionDeniedError as exc:
        error, status = str(exc), 403
    except (UnusableInputError, ValidationError) as exc:
        error, status = str(exc), 422
    response = render(
        request, "assist/qa.html", {"data": data, "scope": scope, "error": error, "bar": bar}
    )
    response.status_code = status
    return response


#: Page-specific fields of the filter bar (the shared bar has the region, channel, dates).
PAGE_FIELDS = ("team", "agent_id", "rule_id")


@pages.get("/qa/{voice_id:path}", response_class=HTMLResponse)
def qa_conversation_page(
    voice_id: str,
    request: Request,
    settings: Settings = SETTINGS,
    session: Session = SESSION,
    principal: Principal = Depends(require_page_login),
) -> HTMLResponse:
    """Show one conversation with the turns that hit a rule highlighted, and its labels."""
    try:
        detail: dict[str, Any] | None = qa.qa_conversation(
            settings=settings,
            voice_id=voice_id,
            principal=principal,
            session=session,
            lang=language(request),
        )
    except NotFoundError:
        detail = None
    response = render(
        request,
        "assist/qa_conversation.html",
        {
            "detail": detail,
            "voice_id": voice_id,
            "reviewer": principal.role in qa.REVIEWER_ROLES,
            "saved": request.query_params.get("saved"),
        },
    )
    if detail is None:
        response.status_code = 404
    return response


@pages.post("/qa/{voice_id:path}")
def qa_label_form(
    voice_id: str,
    request: Request,
    hit_id: str | None = Form(default=None),
    rule_id: str | None = Form(default=None),
    verdict: str = Form(...),
    note: str | None = Form(default=None),
    settings: Settings = SETTINGS,
    session: Session = SESSION,
    principal: Principal = Depends(require_page_login),
) -> Response:
    """Store a verdict from the conversation page's form, then show the page again."""
    if verdict in ("confirm", "overturn") and hit_id:
        qa.label_hit(
            session=session,
            settings=settings,
            principal=principal,
            hit_id=hit_id,
            request=LabelRequest(verdict=verdict, note=note or None),
        )
    elif verdict == "missed" and rule_id:
        qa.label_missed(
            session=session,
            settings=settings,
            principal=principal,
            voice_id=voice_id,
            request=MissedRequest(rule_id=rule_id, note=note or None),
        )
    else:
        raise UnusableInputError(
            "verdict: use confirm or overturn with a hit_id, or missed with a rule_id"
        )
    from urllib.parse import quote

    return RedirectResponse(f"/qa/{quote(voice_id)}?saved={verdict}", status_code=303)
