"""HTTP routes of the detect domain: JSON API (router, under /api/v1) and pages."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from voxloop.act.access import Principal
from voxloop.api.service import get_session, optional_principal, require_permission
from voxloop.detect.models import Alert, Problem, ProblemMember
from voxloop.detect.notify import alert_payload, transition_alert
from voxloop.detect.schemas import AlertTransition, MergeRequest, SplitRequest
from voxloop.detect.service import merge_problems, problem_payload, split_problem

router = APIRouter(tags=["detect"])
pages = APIRouter(include_in_schema=False)

READ = Depends(require_permission("read"))
WRITE = Depends(require_permission("write"))

ALERT_STATES = ("open", "acknowledged", "closed")
PROBLEM_STATES = ("new", "ongoing", "escalating", "resolved", "regressed", "merged")


def _alerts(session: Session, state: str | None, limit: int) -> list[Alert]:
    query = select(Alert).order_by(Alert.first_bucket.desc(), Alert.id.desc()).limit(limit)
    if state:
        query = query.where(Alert.state == state)
    return list(session.scalars(query))


def _problems(
    session: Session, state: str | None, scenario: str | None, limit: int
) -> list[Problem]:
    query = select(Problem).order_by(Problem.last_seen.desc(), Problem.id).limit(limit)
    if state:
        query = query.where(Problem.state == state)
    else:
        query = query.where(Problem.merged_into.is_(None))
    if scenario:
        query = query.where(Problem.scenario == scenario)
    return list(session.scalars(query))


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
) -> list[dict[str, Any]]:
    """List surge alerts, newest first."""
    _bad_state(state, ALERT_STATES)
    return [alert_payload(a) for a in _alerts(session, state, limit)]


@router.get("/alerts/{alert_id}")
def get_alert(
    alert_id: int, principal: Principal = READ, session: Session = Depends(get_session)
) -> dict[str, Any]:
    """Return one alert."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise HTTPException(status_code=404, detail=f"alert {alert_id} not found")
    return alert_payload(alert)


@router.post("/alerts/{alert_id}/state")
def change_alert_state(
    alert_id: int,
    body: AlertTransition,
    principal: Principal = WRITE,
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Acknowledge, close or reopen an alert."""
    alert = transition_alert(session=session, alert_id=alert_id, state=body.state)
    session.commit()
    return alert_payload(alert)


@router.get("/problems")
def list_problems(
    state: str | None = Query(default=None),
    scenario: str | None = Query(default=None, max_length=20),
    limit: int = Query(default=100, ge=1, le=1000),
    principal: Principal = READ,
    session: Session = Depends(get_session),
) -> list[dict[str, Any]]:
    """List problems (merged ones only when asked by state), most recent first."""
    _bad_state(state, PROBLEM_STATES)
    return [problem_payload(p) for p in _problems(session, state, scenario, limit)]


@router.get("/problems/{problem_id}")
def get_problem(
    problem_id: str, principal: Principal = READ, session: Session = Depends(get_session)
) -> dict[str, Any]:
    """Return a problem with its typical cases, daily counts, regions and voice ids."""
    problem = session.get(Problem, problem_id)
    if problem is None:
        raise HTTPException(status_code=404, detail=f"problem {problem_id} not found")
    out = problem_payload(problem, detail=True)
    out["voice_ids"] = list(
        session.scalars(
            select(ProblemMember.voice_id)
            .where(ProblemMember.problem_id == problem_id)
            .order_by(ProblemMember.voice_id)
        )
    )
    return out


@router.post("/problems/{problem_id}/merge")
def merge(
    problem_id: str,
    body: MergeRequest,
    principal: Principal = WRITE,
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Merge other problems into this one (remembered for later grouping)."""
    problem = merge_problems(
        session=session, target=problem_id, sources=body.sources, actor=principal.username
    )
    session.commit()
    return problem_payload(problem)


@router.post("/problems/{problem_id}/split", status_code=201)
def split(
    problem_id: str,
    body: SplitRequest,
    principal: Principal = WRITE,
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Move voices out of this problem into a new problem."""
    new = split_problem(
        session=session,
        problem_id=problem_id,
        voice_ids=body.voice_ids,
        actor=principal.username,
    )
    session.commit()
    return problem_payload(new)


def _login(request: Request) -> RedirectResponse:
    from urllib.parse import quote

    return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)


@pages.get("/problems", response_class=HTMLResponse, response_model=None)
def problems_page(
    request: Request,
    state: str | None = Query(default=None),
    principal: Principal | None = Depends(optional_principal),
    session: Session = Depends(get_session),
) -> Response:
    """Show open alerts and the problem list."""
    from voxloop.web import charts
    from voxloop.web.service import language, render, translate

    if principal is None:
        return _login(request)
    if state not in (None, "", *PROBLEM_STATES):
        state = None
    lang = language(request)
    alerts = [alert_payload(a) for a in _alerts(session, None, 50)]
    problems = [problem_payload(p) for p in _problems(session, state or None, None, 200)]
    top = sorted(problems, key=lambda p: -p["n_voices"])[:10]
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
        {"alerts": alerts, "problems": problems, "chart": chart, "state": state or ""},
    )


@pages.get("/problems/{problem_id}", response_class=HTMLResponse, response_model=None)
def problem_page(
    request: Request,
    problem_id: str,
    principal: Principal | None = Depends(optional_principal),
    session: Session = Depends(get_session),
) -> Response:
    """Show one problem: summary, daily counts, regions and typical cases."""
    from voxloop.web import charts
    from voxloop.web.service import language, render, translate

    if principal is None:
        return _login(request)
    problem = session.get(Problem, problem_id)
    if problem is None:
        raise HTTPException(status_code=404, detail=f"problem {problem_id} not found")
    lang = language(request)
    data = problem_payload(problem, detail=True)
    daily = json.loads(problem.daily_json)
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
