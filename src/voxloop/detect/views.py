"""HTTP routes of the detect domain: JSON API (router, under /api/v1) and pages.

Every route follows the caller's region scope (``Principal.province``/``city``); the
rules live with the service functions (``voxloop.detect.service``, "Region scope"):

* problems: listed when one of their voices lies in the caller's region, shown with
  counts, places, daily counts, typical cases and voice ids of that region only; merge and
  split need every problem involved wholly inside the region (403 otherwise);
* alerts: listed when the root cause's region and the caller's are nested (so national
  alerts reach everyone), typical cases cut to the caller's region; state changes need
  the root cause inside the caller's region (403 otherwise);
* an alert or problem the caller may not see answers 404, as if it did not exist;
* actions (work orders opened from a problem or an alert, linking voices, resolving with a
  fix note) need the ``write`` permission, cover only the source's voices inside the
  caller's region, go through the act service (audit log, optimistic concurrency on the
  order ``version``) and, from the pages, a form token bound to the session cookie.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Header, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from voxloop.act import service as act_service
from voxloop.act.access import SESSION_COOKIE, Principal
from voxloop.act.models import WorkOrder, WorkOrderLink
from voxloop.act.schemas import (
    LinkVoicesRequest,
    OrderOut,
    ResolveRequest,
    SourceOrderRequest,
)
from voxloop.act.sources import order_request
from voxloop.api.service import get_session, get_settings, optional_principal, require_permission
from voxloop.config import Settings
from voxloop.detect import service
from voxloop.detect.models import Alert, Problem, ProblemMember
from voxloop.detect.notify import transition_alert
from voxloop.detect.schemas import AlertTransition, MergeRequest, SplitRequest
from voxloop.detect.service import (
    ActionSource,
    alert_views,
    alert_visible,
    alert_within,
    lake_voices,
    merge_problems,
    problem_views,
    problem_visible,
    split_problem,
)
from voxloop.errors import (
    NotFoundError,
    PermissionDeniedError,
    UnusableInputError,
    VoxloopError,
)

router = APIRouter(tags=["detect"])
#: Alert ids are 64-bit store keys; a larger number is refused (422) before the store sees it.
AlertId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Alert id.")]
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
    alert_id: AlertId,
    principal: Principal = READ,
    session: Session = Depends(get_session),
    settings: Settings = SETTINGS,
) -> dict[str, Any]:
    """Return one alert (404 outside the caller's region scope)."""
    alert = _visible_alert(session, alert_id, principal)
    return alert_views(settings=settings, principal=principal, alerts=[alert])[0]


@router.post("/alerts/{alert_id}/state")
def change_alert_state(
    alert_id: AlertId,
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


def _bar_filters(request: Request, principal: Principal) -> dict[str, Any]:
    """Return the filter bar's values that are set (``from``, ``to``, region, scenario ...).

    Parsed by the shared ``voxloop.web.service.request_filters`` (same names on every
    page; a region outside the caller's scope answers 403, a bad value 422 naming it).
    """
    from voxloop.web.schemas import PageFilters
    from voxloop.web.service import request_filters

    filters: PageFilters = request_filters(request, principal)
    out: dict[str, Any] = {
        "from": filters.date_from,
        "to": filters.date_to,
        "province": filters.province,
        "city": filters.city,
        "district": filters.district,
        "channel": filters.channel,
        "scenario": filters.scenario,
        "sentiment": filters.sentiment,
    }
    return {k: v for k, v in out.items() if v}


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
    from voxloop.web.service import language, problem_label, problems_in_bar, render, translate

    if principal is None:
        return _login(request)
    if state not in (None, "", *PROBLEM_STATES):
        state = None
    order = sort if sort in service.PROBLEM_SORTS else "last_seen"
    lang = language(request)
    bar = _bar_filters(request, principal)
    # With filters on, read further down the list so the page still fills up.
    wide = 10 if bar else 1

    def problems_by(sort_by: str, limit: int) -> list[Problem]:
        found = service.list_problems(
            session=session,
            principal=principal,
            state=state,
            scenario=bar.get("scenario"),
            limit=limit * wide,
            sort=sort_by,
        )
        return service.filter_problems(
            problems_in_bar(request, principal, found, settings=settings, session=session),
            start=bar.get("from"),
            end=bar.get("to"),
            province=bar.get("province"),
            city=bar.get("city"),
        )[:limit]

    alerts = alert_views(
        settings=settings,
        principal=principal,
        alerts=service.filter_alerts(
            service.list_alerts(session=session, principal=principal, limit=50 * wide),
            start=bar.get("from"),
            end=bar.get("to"),
            values={k: bar.get(k) for k in ("scenario", "province", "city", "district", "channel")},
        )[:50],
    )
    problems = problem_views(
        settings=settings, session=session, principal=principal, problems=problems_by(order, 200)
    )
    # The chart ranks the largest problems, whatever order the list below is in.
    largest = (
        problems
        if order == "voices"
        else problem_views(
            settings=settings,
            session=session,
            principal=principal,
            problems=problems_by("voices", 50),
        )
    )
    top = sorted(largest, key=lambda p: -p["n_voices"])[:10]
    chart = charts.bar_chart(
        [problem_label(p, lang) for p in top],
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
    source = service.problem_source(
        settings=settings, session=session, principal=principal, problem_id=problem_id, view=data
    )
    actions = page_actions(
        request=request,
        settings=settings,
        session=session,
        principal=principal,
        source=source,
        base=f"/problems/{problem_id}",
    )
    return render(
        request,
        "detect/problem.html",
        {"p": data, "chart": chart, "regions": regions, "actions": actions},
    )


# ---------------------------------------------------------------------------
# Actions where the data is: work orders from problems and alerts.


def _problem_source(
    settings: Settings, session: Session, principal: Principal, problem_id: str
) -> ActionSource:
    return service.problem_source(
        settings=settings, session=session, principal=principal, problem_id=problem_id
    )


def _alert_source(
    settings: Settings, session: Session, principal: Principal, alert_id: int
) -> ActionSource:
    return service.alert_source(
        settings=settings, session=session, principal=principal, alert_id=alert_id
    )


def _orders_of(session: Session, principal: Principal, source: ActionSource) -> list[WorkOrder]:
    return act_service.source_orders(
        session=session, principal=principal, source_kind=source.kind, source_ref=source.ref
    )


def _order_json(order: WorkOrder) -> dict[str, Any]:
    return OrderOut.model_validate(order).model_dump(mode="json")


def actions_view(*, session: Session, principal: Principal, source: ActionSource) -> dict[str, Any]:
    """Return a source's orders, verification of the fix and regression state (JSON)."""
    orders = _orders_of(session, principal, source)
    verification = act_service.verification_summary(session=session, orders=orders)
    return {
        "source": {"kind": source.kind, "ref": source.ref, "title": source.title},
        "orders": [_order_json(o) for o in orders],
        "verification": verification,
        "regressed": any(o.regressed for o in orders) or source.state == "regressed",
    }


def _create_from(
    *,
    settings: Settings,
    session: Session,
    principal: Principal,
    source: ActionSource,
    body: SourceOrderRequest,
    idempotency_key: str | None,
    lang: str,
) -> tuple[WorkOrder, bool]:
    if not principal.can("write"):
        raise PermissionDeniedError(f"role {principal.role!r} may not write")
    data = order_request(
        settings=settings,
        principal=principal,
        source=source,
        title=body.title,
        description=body.description,
        priority=body.priority,
        voice_ids=body.voice_ids or None,
        idempotency_key=body.idempotency_key or idempotency_key,
        lang=lang,
    )
    return act_service.create_order(session=session, principal=principal, data=data)


def _own_order(orders: list[WorkOrder], order_id: str, source: ActionSource) -> WorkOrder:
    for order in orders:
        if order.id == order_id:
            return order
    raise NotFoundError(f"work order {order_id!r} is not an order of {source.kind} {source.ref}")


def _link_to(
    *,
    settings: Settings,
    session: Session,
    principal: Principal,
    source: ActionSource,
    body: LinkVoicesRequest,
) -> tuple[WorkOrder, int]:
    from voxloop.act.sources import order_for_voices

    if not principal.can("write"):
        raise PermissionDeniedError(f"role {principal.role!r} may not write")
    _own_order(_orders_of(session, principal, source), body.order_id, source)
    own = set(source.voice_ids)
    foreign = [v for v in body.voice_ids if v not in own]
    if foreign:
        raise UnusableInputError(
            f"voice_ids: not voices of {source.kind} {source.ref} in your region: "
            + ", ".join(foreign[:5])
        )
    # The lake gives each voice's customer and checks the caller's region once more.
    found = order_for_voices(settings=settings, voice_ids=body.voice_ids, principal=principal)
    return act_service.link_voices(
        session=session,
        principal=principal,
        order_id=body.order_id,
        version=body.version,
        voice_ids=found.voice_ids,
        customer_ids=found.customer_ids,
    )


def _resolve(
    *, session: Session, principal: Principal, source: ActionSource, body: ResolveRequest
) -> list[WorkOrder]:
    orders = _orders_of(session, principal, source)
    for item in body.orders:
        _own_order(orders, item.id, source)
    return act_service.resolve_orders(
        session=session,
        principal=principal,
        orders=[(o.id, o.version) for o in body.orders],
        fix_note=body.fix_note,
        reason=body.reason,
    )


def _unprocessable(field: str, message: str) -> HTTPException:
    return HTTPException(
        status_code=422, detail=[{"loc": ["body", field], "msg": message, "type": "value_error"}]
    )


@router.get("/problems/{problem_id}/actions")
def problem_actions(
    problem_id: str,
    principal: Principal = READ,
    session: Session = Depends(get_session),
    settings: Settings = SETTINGS,
) -> dict[str, Any]:
    """Return the problem's work orders, the verification of its fix and its regression."""
    source = _problem_source(settings, session, principal, problem_id)
    return actions_view(session=session, principal=principal, source=source)


@router.post("/problems/{problem_id}/work-orders", status_code=201)
def problem_work_order(
    problem_id: str,
    body: SourceOrderRequest,
    response: Response,
    principal: Principal = WRITE,
    session: Session = Depends(get_session),
    settings: Settings = SETTINGS,
    idempotency_key: str | None = Header(default=None, max_length=200),
    lang: Literal["zh-CN", "en"] = Query(default="en", description="Language of the description."),
) -> dict[str, Any]:
    """Open a routed work order for the problem's voices in the caller's region."""
    source = _problem_source(settings, session, principal, problem_id)
    order, created = _create_from(
        settings=settings,
        session=session,
        principal=principal,
        source=source,
        body=body,
        idempotency_key=idempotency_key,
        lang=lang,
    )
    if not created:
        response.status_code = 200
    return _order_json(order)


@router.post("/problems/{problem_id}/links")
def problem_link(
    problem_id: str,
    body: LinkVoicesRequest,
    principal: Principal = WRITE,
    session: Session = Depends(get_session),
    settings: Settings = SETTINGS,
) -> dict[str, Any]:
    """Link more of the problem's voices to one of its orders (409 on a stale version)."""
    source = _problem_source(settings, session, principal, problem_id)
    order, added = _link_to(
        settings=settings, session=session, principal=principal, source=source, body=body
    )
    return {**_order_json(order), "links_added": added}


@router.post("/problems/{problem_id}/resolve")
def problem_resolve(
    problem_id: str,
    body: ResolveRequest,
    principal: Principal = WRITE,
    session: Session = Depends(get_session),
    settings: Settings = SETTINGS,
) -> dict[str, Any]:
    """Resolve the problem's orders with a fix note; callbacks / re-surveys start."""
    source = _problem_source(settings, session, principal, problem_id)
    try:
        _resolve(session=session, principal=principal, source=source, body=body)
    except ValueError as exc:
        raise _unprocessable("fix_note", str(exc)) from exc
    return actions_view(session=session, principal=principal, source=source)


@router.get("/alerts/{alert_id}/actions")
def alert_actions(
    alert_id: AlertId,
    principal: Principal = READ,
    session: Session = Depends(get_session),
    settings: Settings = SETTINGS,
) -> dict[str, Any]:
    """Return the alert's work orders and the verification of their fix."""
    source = _alert_source(settings, session, principal, alert_id)
    return actions_view(session=session, principal=principal, source=source)


@router.post("/alerts/{alert_id}/work-orders", status_code=201)
def alert_work_order(
    alert_id: AlertId,
    body: SourceOrderRequest,
    response: Response,
    principal: Principal = WRITE,
    session: Session = Depends(get_session),
    settings: Settings = SETTINGS,
    idempotency_key: str | None = Header(default=None, max_length=200),
    lang: Literal["zh-CN", "en"] = Query(default="en", description="Language of the description."),
) -> dict[str, Any]:
    """Open a routed work order for the alert's voices (root cause, its windows, your region)."""
    source = _alert_source(settings, session, principal, alert_id)
    order, created = _create_from(
        settings=settings,
        session=session,
        principal=principal,
        source=source,
        body=body,
        idempotency_key=idempotency_key,
        lang=lang,
    )
    if not created:
        response.status_code = 200
    return _order_json(order)


@router.post("/alerts/{alert_id}/links")
def alert_link(
    alert_id: AlertId,
    body: LinkVoicesRequest,
    principal: Principal = WRITE,
    session: Session = Depends(get_session),
    settings: Settings = SETTINGS,
) -> dict[str, Any]:
    """Link more of the alert's voices to one of its orders (409 on a stale version)."""
    source = _alert_source(settings, session, principal, alert_id)
    order, added = _link_to(
        settings=settings, session=session, principal=principal, source=source, body=body
    )
    return {**_order_json(order), "links_added": added}


@router.post("/alerts/{alert_id}/resolve")
def alert_resolve(
    alert_id: AlertId,
    body: ResolveRequest,
    principal: Principal = WRITE,
    session: Session = Depends(get_session),
    settings: Settings = SETTINGS,
) -> dict[str, Any]:
    """Resolve the alert's orders with a fix note; callbacks / re-surveys start."""
    source = _alert_source(settings, session, principal, alert_id)
    try:
        _resolve(session=session, principal=principal, source=source, body=body)
    except ValueError as exc:
        raise _unprocessable("fix_note", str(exc)) from exc
    return actions_view(session=session, principal=principal, source=source)


# -- pages: forms -------------------------------------------------------------------

#: Recent voices offered for linking on a page, besides the typical cases.
LINK_CANDIDATES = 12


def _form_token(request: Request, settings: Settings) -> str:
    return act_service.form_token(
        secret_key=settings.secret_key, session_value=request.cookies.get(SESSION_COOKIE)
    )


def _check_form(request: Request, settings: Settings, token: str | None) -> None:
    """Refuse a form post from another site: Origin must be this host, token must match."""
    from urllib.parse import urlsplit

    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise PermissionDeniedError(f"csrf: form posted from another site ({origin})")
    if origin == "null":
        raise PermissionDeniedError("csrf: form posted from an opaque origin")
    act_service.check_form_token(
        secret_key=settings.secret_key,
        session_value=request.cookies.get(SESSION_COOKIE),
        token=token,
    )


def _candidates(
    settings: Settings,
    session: Session,
    principal: Principal,
    source: ActionSource,
    orders: list[WorkOrder],
) -> list[dict[str, Any]]:
    """Return typical and recent voices of the source, each marked if already linked."""
    if source.kind == "problem":
        recent = list(
            session.scalars(
                select(ProblemMember.voice_id)
                .where(ProblemMember.problem_id == source.ref)
                .order_by(ProblemMember.assigned_at.desc(), ProblemMember.voice_id.desc())
                .limit(5 * LINK_CANDIDATES)
            )
        )
    else:
        recent = source.voice_ids[-5 * LINK_CANDIDATES :]
    typical = [str(c["voice_id"]) for c in source.typical_cases]
    facts = lake_voices(settings=settings, voice_ids=typical + recent, principal=principal)
    latest = sorted(
        (v for v in recent if v in facts and v not in typical),
        key=lambda v: facts[v].received_at,
        reverse=True,
    )[:LINK_CANDIDATES]
    linked: set[str] = set()
    if orders:
        linked = {
            v
            for v in session.scalars(
                select(WorkOrderLink.voice_id).where(
                    WorkOrderLink.order_id.in_([o.id for o in orders]),
                    WorkOrderLink.voice_id.in_(typical + latest),
                )
            )
            if v
        }
    out = []
    for vid, kind in [(v, "typical") for v in typical] + [(v, "recent") for v in latest]:
        if vid not in facts:
            continue
        out.append(
            {
                "voice_id": vid,
                "kind": kind,
                "text": facts[vid].text,
                "received_at": facts[vid].received_at.isoformat(),
                "linked": vid in linked,
            }
        )
    return out


def page_actions(
    *,
    request: Request,
    settings: Settings,
    session: Session,
    principal: Principal,
    source: ActionSource,
    base: str,
) -> dict[str, Any]:
    """Return what the actions panel of a problem or alert page shows."""
    import uuid

    from voxloop.web.service import language

    orders = _orders_of(session, principal, source)
    verification = act_service.verification_summary(session=session, orders=orders)
    by_id = {row["order_id"]: row for row in verification["orders"]}
    return {
        "base": base,
        "can_write": principal.can("write"),
        "csrf": _form_token(request, settings),
        # A fresh key per rendered form: a double submit opens one order, not two.
        "nonce": uuid.uuid4().hex,
        "orders": [{"o": o, "v": by_id[o.id]} for o in orders],
        "open_orders": [o for o in orders if o.state in _OPEN],
        "summary": verification["summary"],
        "regressed": any(o.regressed for o in orders) or source.state == "regressed",
        "candidates": _candidates(settings, session, principal, source, orders),
        "defaults": {
            "title": source.title,
            "description": service.default_description(source, lang=language(request)),
            "priority": service.default_priority(source),
        },
        "source": source,
        "notice": request.query_params.get("notice"),
        "error": request.query_params.get("error"),
    }


def _open_states() -> frozenset[str]:
    from voxloop.act import states

    return states.OPEN_STATES


_OPEN = _open_states()


def _back(base: str, **params: str) -> RedirectResponse:
    from urllib.parse import urlencode

    return RedirectResponse(f"{base}?{urlencode(params)}#actions", status_code=303)


def _page_action(
    request: Request,
    principal: Principal | None,
    settings: Settings,
    base: str,
    csrf: str | None,
    act: Any,
    notice: str,
) -> Response:
    """Run a form action; come back to the page with a notice or the error's reason."""
    if principal is None:
        return _login(request)
    _check_form(request, settings, csrf)
    if not principal.can("write"):
        raise PermissionDeniedError(f"role {principal.role!r} may not write")
    try:
        act()
    except (VoxloopError, ValueError) as exc:
        return _back(base, error=str(exc)[:300])
    return _back(base, notice=notice)


def _pairs(values: list[str]) -> list[tuple[str, int]]:
    """Parse ``id:version`` form values."""
    out = []
    for value in values:
        order_id, _, version = value.partition(":")
        if not order_id or not version.isdigit():
            raise UnusableInputError(f"order: expected 'id:version', got {value!r}")
        out.append((order_id, int(version)))
    return out


def _form_source(
    settings: Settings, session: Session, principal: Principal, kind: str, ref: str
) -> ActionSource:
    if kind == "problem":
        return _problem_source(settings, session, principal, ref)
    if not ref.isdigit():
        raise NotFoundError(f"alert {ref} not found")
    return _alert_source(settings, session, principal, int(ref))


def _register_forms(kind: str, prefix: str) -> None:
    """Add the create / link / resolve form routes of ``/problems/{id}`` or ``/alerts/{id}``."""

    def create(
        request: Request,
        ref: str,
        csrf: str | None = Form(default=None, max_length=200),
        nonce: str | None = Form(default=None, max_length=64),
        title: str = Form(default="", max_length=300),
        description: str = Form(default="", max_length=20_000),
        priority: str = Form(default="", max_length=10),
        principal: Principal | None = Depends(optional_principal),
        session: Session = Depends(get_session),
        settings: Settings = SETTINGS,
    ) -> Response:
        from voxloop.web.service import language

        base = f"{prefix}/{ref}"

        def act() -> None:
            assert principal is not None
            source = _form_source(settings, session, principal, kind, ref)
            body = SourceOrderRequest.model_validate(
                {
                    "title": title.strip() or None,
                    "description": description.strip() or None,
                    "priority": priority or None,
                    "idempotency_key": f"form:{nonce}" if nonce else None,
                }
            )
            _create_from(
                settings=settings,
                session=session,
                principal=principal,
                source=source,
                body=body,
                idempotency_key=None,
                lang=language(request),
            )

        return _page_action(request, principal, settings, base, csrf, act, "created")

    def link(
        request: Request,
        ref: str,
        csrf: str | None = Form(default=None, max_length=200),
        order: str = Form(default="", max_length=100),
        voice: list[str] = Form(default_factory=list),
        principal: Principal | None = Depends(optional_principal),
        session: Session = Depends(get_session),
        settings: Settings = SETTINGS,
    ) -> Response:
        base = f"{prefix}/{ref}"

        def act() -> None:
            assert principal is not None
            if not voice:
                raise UnusableInputError("voice: tick at least one voice to link")
            (order_id, version), *_ = _pairs([order])
            source = _form_source(settings, session, principal, kind, ref)
            body = LinkVoicesRequest(order_id=order_id, version=version, voice_ids=voice)
            _link_to(
                settings=settings, session=session, principal=principal, source=source, body=body
            )

        return _page_action(request, principal, settings, base, csrf, act, "linked")

    def resolve(
        request: Request,
        ref: str,
        csrf: str | None = Form(default=None, max_length=200),
        fix_note: str = Form(default="", max_length=20_000),
        order: list[str] = Form(default_factory=list),
        principal: Principal | None = Depends(optional_principal),
        session: Session = Depends(get_session),
        settings: Settings = SETTINGS,
    ) -> Response:
        base = f"{prefix}/{ref}"

        def act() -> None:
            assert principal is not None
            if not fix_note.strip():
                raise UnusableInputError("fix_note: describe the fix before resolving")
            if not order:
                raise UnusableInputError("order: tick at least one order to resolve")
            source = _form_source(settings, session, principal, kind, ref)
            body = ResolveRequest.model_validate(
                {
                    "fix_note": fix_note,
                    "orders": [{"id": i, "version": v} for i, v in _pairs(order)],
                }
            )
            _resolve(session=session, principal=principal, source=source, body=body)

        return _page_action(request, principal, settings, base, csrf, act, "resolved")

    for name, endpoint, summary in (
        ("create", create, "Open a work order from the page's form."),
        ("link", link, "Link the ticked voices to an order from the page's form."),
        ("resolve", resolve, "Resolve the ticked orders with a fix note from the page's form."),
    ):
        endpoint.__doc__ = summary
        pages.add_api_route(
            f"{prefix}/{{ref}}/actions/{name}",
            endpoint,
            methods=["POST"],
            response_class=HTMLResponse,
            response_model=None,
            name=f"{kind}_{name}_form",
        )


_register_forms("problem", "/problems")
_register_forms("alert", "/alerts")


@pages.get("/alerts/{alert_id}", response_class=HTMLResponse, response_model=None)
def alert_page(
    request: Request,
    alert_id: AlertId,
    principal: Principal | None = Depends(optional_principal),
    session: Session = Depends(get_session),
    settings: Settings = SETTINGS,
) -> Response:
    """Show one alert: root cause, volume, typical cases and its work-order actions."""
    from voxloop.web.service import render

    if principal is None:
        return _login(request)
    alert = _visible_alert(session, alert_id, principal)
    view = alert_views(settings=settings, principal=principal, alerts=[alert])[0]
    source = _alert_source(settings, session, principal, alert_id)
    actions = page_actions(
        request=request,
        settings=settings,
        session=session,
        principal=principal,
        source=source,
        base=f"/alerts/{alert_id}",
    )
    return render(request, "detect/alert.html", {"a": view, "actions": actions})
