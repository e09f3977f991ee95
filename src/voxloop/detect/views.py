"""HTTP routes of the detect domain: JSON API (router, under /api/v1) and pages.

Every route follows the caller's region scope (``Principal.province``/``city``); the
rules live with the service functions (``voxloop.detect.service``, "Region scope"):

* problems: listed when one of their voices lies in the caller's region, shown with
  counts, places, daily counts, typical cases and voice ids of that region only; merge and
  split need every problem involved wholly inside the region (403 otherwise);
* alerts: listed when the root cause's region and the caller's are nested (so national
  alerts reach everyone), typical cases cut to the caller's region; state changes need
  the root cause inside the caller's region (403 otherwise);
* an alert or problem the caller may not see answers 404, as if it did not exist.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from voxloop.act.access import Principal
from voxloop.api.service import get_session, get_settings, optional_principal, require_permission
from voxloop.config import Settings
from voxloop.detect import service
from voxloop.detect.models import Alert, Problem
from voxloop.detect.notify import transition_alert
from voxloop.detect.schemas import AlertTransition, MergeRequest, SplitRequest
from voxloop.detect.service import (
    alert_views,
    alert_visible,
    alert_within,
    lake_voices,
    merge_problems,
    problem_views,
    problem_visible,
    split_problem,
)
from voxloop.errors import PermissionDeniedError

router = APIRouter(tags=["detect"])
pages = APIRouter(include_in_schema=False)

READ = Depends(require_permission("read"))
WRITE = Depends(require_permission("write"))

ALERT_STATES = ("open", "acknowledged", "closed")
PROBLEM_STATES = ("new", "ongoing", "escalating", "resolved", "regressed", "merged")


SETTINGS = Depends(get_settings)


def _visible_alert(session: Session, alert_id: int, principal: Principal) -> Alert:
    alert = session.get(Alert, alert_id)
    if alert is None or not alert_visible(alert, principal):
        raise HTTPException(status_code=404, detail=f"alert {alert_id} not found")
    return alert


def _visible_problem(session: Session, problem_id: str, principal: Principal) -> Problem:
    problem = session.get(Problem, problem_id)
    if problem is None or not problem_visible(problem, principal):
        raise HTTPException(status_code=404, detail=f"problem {problem_id} not found")
    return problem


def _bad_state(value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise HTTPException(
            status_code=422,
            detail=[{"loc": ["query", "state"], "msg": f"use one of {list(allowed)}"}],
        )


@router.get("/alerts")
def list_alerts(
    state: str | None = Query(default=None),
    limit: int = Query(default=100, ge=1, le=1000),
    principal: Principal = READ,
    session: Session = Depends(get_session),
    settings: Settings = SETTINGS,
) -> list[dict[str, Any]]:
    """List the surge alerts the caller's region scope reaches, newest first."""
    _bad_state(state, ALERT_STATES)
    alerts = service.list_alerts(session=session, principal=principal, state=state, limit=limit)
    return alert_views(settings=settings, principal=principal, alerts=alerts)


@router.get("/alerts/{alert_id}")
def get_alert(
    alert_id: int,
    principal: Principal = READ,
    session: Session = Depends(get_session),
    settings: Settings = SETTINGS,
) -> dict[str, Any]:
    """Return one alert (404 outside the caller's region scope)."""
    alert = _visible_alert(session, alert_id, principal)
    return alert_views(settings=settings, principal=principal, alerts=[alert])[0]


@router.post("/alerts/{alert_id}/state")
def change_alert_state(
    alert_id: int,
    body: AlertTransition,
    principal: Principal = WRITE,
    session: Session = Depends(get_session),
    settings: Settings = SETTINGS,
) -> dict[str, Any]:
    """Acknowledge, close or reopen an alert whose root cause lies in the caller's region."""
    if not alert_within(_visible_alert(session, alert_id, principal), principal):
        raise PermissionDeniedError(
            f"alert {alert_id} reaches beyond your region scope; "
            "only a user whose scope covers its root cause may change it"
        )
    alert = transition_alert(session=session, alert_id=alert_id, state=body.state)
    session.commit()
    return alert_views(settings=settings, principal=principal, alerts=[alert])[0]


@router.get("/problems")
def list_problems(
    state: str | None = Query(default=None),
    scenario: str | None = Query(default=None, max_length=20),
    limit: int = Query(default=100, ge=1, le=1000),
    sort: Literal["last_seen", "voices"] = Query(default="last_seen"),
    principal: Principal = READ,
    session: Session = Depends(get_session),
    settings: Settings = SETTINGS,
) -> list[dict[str, Any]]:
    """List problems in the caller's region (merged ones only when asked by state)."""
    _bad_state(state, PROBLEM_STATES)
    problems = service.list_problems(
        session=session,
        principal=principal,
        state=state,
        scenario=scenario,
        limit=limit,
        sort=sort,
    )
    return problem_views(settings=settings, session=session, principal=principal, problems=problems)


@router.get("/problems/{problem_id}")
def get_problem(
    problem_id: str,
    principal: Principal = READ,
    session: Session = Depends(get_session),
    settings: Settings = SETTINGS,
) -> dict[str, Any]:
    """Return a problem with its typical cases, daily counts, regions and voice ids."""
    problem = _visible_problem(session, problem_id, principal)
    return problem_views(
        settings=settings, session=session, principal=principal, problems=[problem], detail=True
    )[0]


@router.post("/problems/{problem_id}/merge")
def merge(
    problem_id: str,
    body: MergeRequest,
    principal: Principal = WRITE,
    session: Session = Depends(get_session),
    settings: Settings = SETTINGS,
) -> dict[str, Any]:
    """Merge other problems into this one (all wholly inside the caller's region)."""
    problem = merge_problems(
        session=session,
        target=problem_id,
        sources=body.sources,
        actor=principal.username,
        principal=principal,
    )
    session.commit()
    return problem_views(
        settings=settings, session=session, principal=principal, problems=[problem]
    )[0]


@router.post("/problems/{problem_id}/split", status_code=201)
def split(
    problem_id: str,
    body: SplitRequest,
    principal: Principal = WRITE,
    session: Session = Depends(get_session),
    settings: Settings = SETTINGS,
) -> dict[str, Any]:
    """Move voices out of this problem (wholly inside the caller's region) into a new one."""
    new = split_problem(
        session=session,
        problem_id=problem_id,
        voice_ids=body.voice_ids,
        actor=principal.username,
        principal=principal,
        voices=lake_voices(settings=settings, voice_ids=body.voice_ids),
    )
    session.commit()
    return problem_views(settings=settings, session=session, principal=principal, problems=[new])[0]


def _login(request: Request) -> RedirectResponse:
    from urllib.parse import quote

    return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)


@pages.get("/problems", response_class=HTMLResponse, response_model=None)
def problems_page(
    request: Request,
    state: str | None = Query(default=None),
    sort: str | None = Query(default=None),
    principal: Principal | None = Depends(optional_principal),
    session: Session = Depends(get_session),
    settings: Settings = SETTINGS,
) -> Response:
    """Show the alerts and the problem list of the caller's region."""
    from voxloop.web import charts
    from voxloop.web.service import language, render, translate

    if principal is None:
        return _login(request)
    if state not in (None, "", *PROBLEM_STATES):
        state = None
    order = sort if sort in service.PROBLEM_SORTS else "last_seen"
    lang = language(request)
    alerts = alert_views(
        settings=settings,
        principal=principal,
        alerts=service.list_alerts(session=session, principal=principal, limit=50),
    )
    problems = problem_views(
        settings=settings,
        session=session,
        principal=principal,
        problems=service.list_problems(
            session=session, principal=principal, state=state, limit=200, sort=order
        ),
    )
    # The chart ranks the largest problems, whatever order the list below is in.
    largest = (
        problems
        if order == "voices"
        else problem_views(
            settings=settings,
            session=session,
            principal=principal,
            problems=service.list_problems(
                session=session, principal=principal, state=state, limit=50, sort="voices"
            ),
        )
    )
    top = sorted(largest, key=lambda p: -p["n_voices"])[:10]
    chart = charts.bar_chart(
        [p["title"] for p in top],
        [p["n_voices"] for p in top],
        title=translate("detect.problems.chart", lang),
        hrefs=[f"/problems/{p['id']}" for p in top],
        empty_message=translate("detect.none", lang),
    )
    return render(
        request,
        "detect/problems.html",
        {
            "alerts": alerts,
            "problems": problems,
            "chart": chart,
            "state": state or "",
            "sort": order,
        },
    )


@pages.get("/problems/{problem_id}", response_class=HTMLResponse, response_model=None)
def problem_page(
    request: Request,
    problem_id: str,
    principal: Principal | None = Depends(optional_principal),
    session: Session = Depends(get_session),
    settings: Settings = SETTINGS,
) -> Response:
    """Show one problem in the caller's region: summary, daily counts, places, cases."""
    from voxloop.web import charts
    from voxloop.web.service import language, render, translate

    if principal is None:
        return _login(request)
    problem = _visible_problem(session, problem_id, principal)
    lang = language(request)
    data = problem_views(
        settings=settings, session=session, principal=principal, problems=[problem], detail=True
    )[0]
    daily: dict[str, int] = data["daily"]
    chart = charts.line_chart(
        {
            translate("detect.col.voices", lang): [
                (date.fromisoformat(d), n) for d, n in daily.items()
            ]
        },
        title=translate("detect.problem.daily", lang),
        empty_message=translate("detect.none", lang),
    )
    regions = sorted(data["regions"].items(), key=lambda kv: -kv[1])[:15]
    return render(
        request,
        "detect/problem.html",
        {"p": data, "chart": chart, "regions": regions},
    )
