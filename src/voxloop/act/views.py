"""HTTP routes of the act domain: JSON API (router, under /api/v1) and pages.

Every route needs a principal (bearer token, session cookie, or dev mode; see
``voxloop.act.access``); region-scoped users only ever see their own region's orders, and an
order outside the scope answers 404 exactly like a missing one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Header, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from voxloop.act import kpis, service, supervision
from voxloop.act.access import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    Principal,
    authenticate_password,
    make_session_cookie,
)
from voxloop.act.commitments import load_commitments
from voxloop.act.schemas import (
    AnswerRequest,
    AssignRequest,
    CommentRequest,
    FromVoicesRequest,
    OrderCreate,
    OrderOut,
    TransitionRequest,
)
from voxloop.api.service import (
    get_session,
    get_settings,
    optional_principal,
    require_permission,
)
from voxloop.config import Settings
from voxloop.errors import VoxloopError
from voxloop.store.service import part_files, table_dir

router = APIRouter(tags=["act"])
pages = APIRouter(include_in_schema=False)

READ = Depends(require_permission("read"))
WRITE = Depends(require_permission("write"))
OPERATE = Depends(require_permission("operate"))


def _unprocessable(field: str, message: str) -> HTTPException:
    return HTTPException(
        status_code=422,
        detail=[{"loc": ["body", field], "msg": message, "type": "value_error"}],
    )


def _end_read(session: Session) -> None:
    # End a read-only transaction here, in the route's worker thread: the request's session
    # then closes on the event loop without a second hop to the thread pool.
    session.rollback()


def _out(order: Any) -> dict[str, Any]:
    return OrderOut.model_validate(order).model_dump(mode="json")


@router.post("/work-orders", status_code=201)
def create_work_order(
    data: OrderCreate,
    response: Response,
    principal: Principal = WRITE,
    session: Session = Depends(get_session),
    idempotency_key: str | None = Header(default=None, max_length=200),
) -> dict[str, Any]:
    """Create a work order; a retried request with the same Idempotency-Key returns it again."""
    if idempotency_key and not data.idempotency_key:
        data = data.model_copy(update={"idempotency_key": idempotency_key})
    order, created = service.create_order(session=session, principal=principal, data=data)
    if not created:
        response.status_code = 200
    return _out(order)


@router.post("/work-orders/from-voices", status_code=201)
def create_work_order_from_voices(
    data: FromVoicesRequest,
    response: Response,
    principal: Principal = WRITE,
    session: Session = Depends(get_session),
    settings: Settings = Depends(get_settings),
    idempotency_key: str | None = Header(default=None, max_length=200),
) -> dict[str, Any]:
    """Create an order for lake voices (region, scenario and customers taken from the lake)."""
    from voxloop.act.sources import order_for_voices

    try:
        request = order_for_voices(
            settings=settings,
            voice_ids=data.voice_ids,
            source_kind=data.source_kind,
            source_ref=data.source_ref,
            title=data.title,
            idempotency_key=data.idempotency_key or idempotency_key,
            principal=principal,
        )
    except ValueError as exc:
        raise _unprocessable("voice_ids", str(exc)) from exc
    order, created = service.create_order(session=session, principal=principal, data=request)
    if not created:
        response.status_code = 200
    return _out(order)


@router.get("/work-orders")
def list_work_orders(
    principal: Principal = READ,
    session: Session = Depends(get_session),
    state: str | None = Query(default=None, max_length=30),
    scenario: str | None = Query(default=None, max_length=20),
    province: str | None = Query(default=None, max_length=100),
    queue: str | None = Query(default=None, max_length=100),
    source_ref: str | None = Query(default=None, max_length=200),
    limit: int = Query(default=100, ge=1, le=1000),
    # Bounded: an unbounded int overflows the store's BIGINT (a 500 found by fuzzing).
    offset: int = Query(default=0, ge=0, le=10**9),
) -> dict[str, Any]:
    """List the work orders in the caller's region, newest first."""
    orders = service.list_orders(
        session=session,
        principal=principal,
        state=state,
        scenario=scenario,
        province=province,
        queue=queue,
        source_ref=source_ref,
        limit=limit,
        offset=offset,
    )
    body = {"items": [_out(o) for o in orders], "limit": limit, "offset": offset}
    _end_read(session)
    return body


@router.get("/work-orders/{order_id}")
def get_work_order(
    order_id: str, principal: Principal = READ, session: Session = Depends(get_session)
) -> dict[str, Any]:
    """Return one order with its linked customers/voices, comments and verification tasks."""
    order = service.get_order(session=session, principal=principal, order_id=order_id)
    links = service.order_links(session=session, order_id=order.id)
    customers = [link.customer_id for link in links if link.customer_id]
    body = _out(order)
    body["links"] = [{"customer_id": x.customer_id, "voice_id": x.voice_id} for x in links]
    body["comments"] = [
        {"author": c.author, "body": c.body, "created_at": c.created_at.isoformat()}
        for c in service.comments(session=session, order_id=order.id)
    ]
    body["verification_tasks"] = [
        {
            "id": t.id,
            "customer_id": t.customer_id,
            "kind": t.kind,
            "state": t.state,
            "satisfied": t.satisfied,
        }
        for t in service.verification_tasks(session=session, order_id=order.id)
    ]
    if customers:
        service.record_access(
            session=session,
            principal=principal,
            customer_ids=customers,
            purpose=f"order:{order.id}",
        )
    _end_read(session)
    return body


@router.post("/work-orders/{order_id}/transition")
def transition_work_order(
    order_id: str,
    data: TransitionRequest,
    principal: Principal = WRITE,
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Move an order to another state (409 on a stale version or an illegal transition)."""
    try:
        order = service.transition(
            session=session,
            principal=principal,
            order_id=order_id,
            to=data.to,
            version=data.version,
            reason=data.reason,
            notes=data.notes,
        )
    except ValueError as exc:
        _end_read(session)
        raise _unprocessable("reason", str(exc)) from exc
    except VoxloopError:
        # A refused change (409 stale version, 404) ends its transaction here too.
        _end_read(session)
        raise
    return _out(order)


@router.post("/work-orders/{order_id}/assign")
def assign_work_order(
    order_id: str,
    data: AssignRequest,
    principal: Principal = Depends(require_permission("assign")),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Assign an order to a user working in its region."""
    order = service.assign(
        session=session,
        principal=principal,
        order_id=order_id,
        assignee=data.assignee,
        version=data.version,
    )
    return _out(order)


@router.post("/work-orders/{order_id}/comments", status_code=201)
def comment_work_order(
    order_id: str,
    data: CommentRequest,
    principal: Principal = WRITE,
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Add a comment to an order."""
    comment = service.add_comment(
        session=session, principal=principal, order_id=order_id, body=data.body
    )
    return {"id": comment.id, "author": comment.author, "created_at": comment.created_at}


@router.get("/work-orders/{order_id}/audit")
def work_order_audit(
    order_id: str, principal: Principal = READ, session: Session = Depends(get_session)
) -> list[dict[str, Any]]:
    """Return an order's audit trail."""
    service.get_order(session=session, principal=principal, order_id=order_id)
    return [
        {"at": e.at.isoformat(), "actor": e.actor, "action": e.action, "detail": e.detail}
        for e in service.audit_trail(session=session, object_id=order_id)
    ]


@router.get("/verification-tasks")
def list_verification_tasks(
    principal: Principal = READ,
    session: Session = Depends(get_session),
    limit: int = Query(default=200, ge=1, le=5000),
) -> list[dict[str, Any]]:
    """List pending callback / re-survey tasks in the caller's region, oldest first."""
    tasks = service.pending_verification_tasks(session=session, principal=principal, limit=limit)
    return [
        {
            "id": t.id,
            "order_id": t.order_id,
            "customer_id": t.customer_id,
            "kind": t.kind,
            "created_at": t.created_at.isoformat(),
        }
        for t in tasks
    ]


@router.post("/verification-tasks/{task_id}/answer")
def answer_verification_task(
    # Bounded to the store's BIGINT: a larger id reached the database and failed there.
    task_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    data: AnswerRequest,
    principal: Principal = WRITE,
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Record a customer's callback / re-survey answer."""
    task = service.record_answer(
        session=session,
        principal=principal,
        task_id=task_id,
        satisfied=data.satisfied,
        score=data.score,
        note=data.note,
    )
    return {"id": task.id, "state": task.state, "satisfied": task.satisfied}


@router.post("/act/tick")
def act_tick(
    principal: Principal = OPERATE,
    session: Session = Depends(get_session),
    settings: Settings = Depends(get_settings),
) -> dict[str, Any]:
    """Run the SLA reminders/escalations, the verification check and due reports now."""
    from voxloop.web.report import run_scheduled_reports

    now = datetime.now(UTC)
    out: dict[str, Any] = {
        "sla": service.tick(session=session, at=now),
        "verification": service.evaluate_verification(session=session, at=now),
    }
    # A report that cannot render (no CJK font) must not fail the SLA tick.
    try:
        out["reports"] = [e.id for e in run_scheduled_reports(settings=settings, at=now)]
    except VoxloopError as exc:
        out["reports_error"] = str(exc)
    return out


def _events_connection(settings: Settings, principal: Principal) -> Any:
    """DuckDB connection with an ``events`` view restricted to the principal's region."""
    import duckdb

    con = duckdb.connect(":memory:")
    if part_files(settings, "events"):
        glob = str(table_dir(settings, "events") / "part-*.parquet").replace("'", "''")
        where = kpis._scope_sql(principal, "e")
        con.execute(
            f"CREATE VIEW events AS SELECT * FROM "
            f"(SELECT * FROM read_parquet('{glob}', union_by_name=true) "
            f"QUALIFY row_number() OVER (PARTITION BY id) = 1) e WHERE {where}"
        )
    return con


def _checks(settings: Settings, principal: Principal) -> Any:
    return supervision.check_events(_events_connection(settings, principal))


@router.get("/commitments")
def list_commitments(principal: Principal = READ) -> dict[str, Any]:
    """Return the commitments, their SLA limits and the escalation chain."""
    return load_commitments().model_dump()


@router.get("/commitments/compliance")
def commitment_compliance(
    principal: Principal = READ,
    settings: Settings = Depends(get_settings),
    period: str = Query(default="week", pattern="^(day|week|month)$"),
) -> dict[str, Any]:
    """Return compliance per supervision rule and its trend."""
    checks = _checks(settings, principal)
    return {
        "rules": supervision.compliance(checks),
        "trend": supervision.trend(checks, period=period),
    }


@router.get("/commitments/violations")
def commitment_violations(
    principal: Principal = READ,
    settings: Settings = Depends(get_settings),
    rule: str | None = Query(default=None, pattern="^R[0-9]{1,2}$"),
    limit: int = Query(default=200, ge=1, le=100_000),
) -> dict[str, Any]:
    """Return violations (customer pseudonym, events, deadline) per rule."""
    checks = _checks(settings, principal)
    rows = [v for v in supervision.violations(checks) if rule is None or v["rule"] == rule]
    return {"total": len(rows), "items": rows[:limit]}


@router.post("/commitments/violations/orders")
def open_violation_orders(
    principal: Principal = Depends(require_permission("assign")),
    session: Session = Depends(get_session),
    settings: Settings = Depends(get_settings),
    rule: str | None = Query(default=None, pattern="^R[0-9]{1,2}$"),
) -> dict[str, int]:
    """Open one work order per violation in the caller's region (safe to repeat)."""
    checks = _checks(settings, principal)
    found = [v for v in supervision.violations(checks) if rule is None or v["rule"] == rule]
    return service.open_orders_for_violations(
        session=session, principal=principal, violations=found
    )


@router.get("/kpis")
def get_kpis(
    principal: Principal = READ,
    session: Session = Depends(get_session),
    settings: Settings = Depends(get_settings),
) -> dict[str, Any]:
    """Return the operations KPIs (see docs/kpis.md)."""
    from voxloop.store.service import lake_connection

    con = lake_connection(settings, ("voices", "readings", "customers"))
    return {
        "lake": kpis.lake_kpis(con, principal=principal),
        "orders": kpis.order_kpis(session=session, principal=principal),
    }


# ---------------------------------------------------------------------------
# Pages


def _login_redirect(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)


def _safe_next(target: str | None) -> str:
    # Only same-site paths: never redirect to another host after login.
    # Browsers read "/\\host" like "//host", so any backslash is refused too.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@pages.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None) -> HTMLResponse:
    """Show the login form."""
    from voxloop.web.service import render

    return render(request, "act/login.html", {"next": _safe_next(next), "error": None})


@pages.post("/login", response_model=None)
def login_submit(
    request: Request,
    username: str = Form(max_length=100),
    password: str = Form(max_length=1000),
    next: str = Form(default="/", max_length=500),
    session: Session = Depends(get_session),
    settings: Settings = Depends(get_settings),
) -> Response:
    """Check the password and set the signed session cookie."""
    from voxloop.web.service import render

    principal = authenticate_password(session=session, username=username, password=password)
    if principal is None or principal.user_id is None:
        response = render(
            request, "act/login.html", {"next": _safe_next(next), "error": "act.login.failed"}
        )
        response.status_code = 401
        return response
    service.audit(
        session=session,
        actor=principal.username,
        action="user.login",
        object_type="user",
        object_id=str(principal.user_id),
    )
    session.commit()
    redirect = RedirectResponse(_safe_next(next), status_code=303)
    redirect.set_cookie(
        SESSION_COOKIE,
        make_session_cookie(secret_key=settings.secret_key, user_id=principal.user_id),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="lax",
        secure=settings.env == "prod",
    )
    return redirect


@pages.post("/logout")
def logout() -> RedirectResponse:
    """Drop the session cookie."""
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


def _countdown(due: datetime | None, now: datetime) -> dict[str, Any] | None:
    if due is None:
        return None
    seconds = (due - now).total_seconds()
    hours = abs(seconds) / 3600
    text = f"{int(hours // 24)}d {int(hours % 24)}h" if hours >= 24 else f"{hours:.1f}h"
    level = "breached" if seconds < 0 else ("soon" if seconds < 4 * 3600 else "ok")
    return {"text": text, "level": level, "overdue": seconds < 0}


def _local_bounds(settings: Settings, filters: Any) -> tuple[datetime | None, datetime | None]:
    """Return the UTC instants where the bar's local ``from`` day starts and ``to`` day ends."""
    from datetime import time, timedelta
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(settings.timezone)
    start = end = None
    if filters.date_from is not None:
        start = datetime.combine(filters.date_from, time(), zone).astimezone(UTC)
    if filters.date_to is not None:
        end = datetime.combine(filters.date_to + timedelta(days=1), time(), zone).astimezone(UTC)
    return start, end


def _filtered_orders(
    *, session: Session, settings: Settings, principal: Principal, filters: Any, limit: int | None
) -> list[Any]:
    """Return the orders in the principal's scope that the filter bar keeps, newest first."""
    from sqlalchemy import select

    from voxloop.act.access import scope_filter
    from voxloop.act.models import WorkOrder

    query = select(WorkOrder).where(scope_filter(principal, WorkOrder.province, WorkOrder.city))
    for column, value in (
        (WorkOrder.province, filters.province),
        (WorkOrder.city, filters.city),
        (WorkOrder.district, filters.district),
        (WorkOrder.channel, filters.channel),
        (WorkOrder.scenario, filters.scenario),
    ):
        if value:
            query = query.where(column == value)
    start, end = _local_bounds(settings, filters)
    if start is not None:
        query = query.where(WorkOrder.created_at >= start)
    if end is not None:
        query = query.where(WorkOrder.created_at < end)
    query = query.order_by(WorkOrder.created_at.desc(), WorkOrder.id)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


#: Columns of the work-order download.
ORDER_COLUMNS = (
    "id",
    "title",
    "state",
    "priority",
    "scenario",
    "subcategory",
    "channel",
    "province",
    "city",
    "district",
    "queue",
    "routing_rule",
    "commitment_id",
    "created_at",
    "due_at",
    "breached_at",
    "escalation_level",
    "resolved_at",
    "closed_at",
    "resolution_reason",
    "regressed",
)


@pages.get("/work-orders", response_class=HTMLResponse, response_model=None)
def work_orders_page(
    request: Request,
    principal: Principal | None = Depends(optional_principal),
    session: Session = Depends(get_session),
    settings: Settings = Depends(get_settings),
) -> Response:
    """Show the work-order board with SLA countdowns (filter bar; CSV/Excel download)."""
    from voxloop.act import states
    from voxloop.act.access import require
    from voxloop.errors import UnusableInputError
    from voxloop.web.export import audited_export, export_format, export_table
    from voxloop.web.schemas import PageFilters
    from voxloop.web.service import filter_bar, render, request_filters

    if principal is None:
        return _login_redirect(request)
    require(principal, "read")
    bar = filter_bar(request, principal)
    error = None
    try:
        filters = request_filters(request, principal, PageFilters)
        fmt = export_format(request)
    except UnusableInputError as exc:
        filters, fmt, error = PageFilters(), None, str(exc)
    if fmt is not None:
        export_table(request, ("orders",))
        found = _filtered_orders(
            session=session, settings=settings, principal=principal, filters=filters, limit=None
        )
        return audited_export(
            request,
            principal=principal,
            fmt=fmt,
            table="work_orders",
            header=ORDER_COLUMNS,
            rows=[tuple(getattr(o, c) for c in ORDER_COLUMNS) for o in found],
            filters=filters.model_dump(mode="json", by_alias=True, exclude_defaults=True),
        )
    now = datetime.now(UTC)
    orders = _filtered_orders(
        session=session, settings=settings, principal=principal, filters=filters, limit=500
    )
    columns = [
        states.NEW,
        states.ASSIGNED,
        states.IN_PROGRESS,
        states.PENDING_CUSTOMER,
        states.ESCALATED,
        states.REOPENED,
        states.RESOLVED,
    ]
    board = {state: [o for o in orders if o.state == state] for state in columns}
    counts = (
        service.count_orders(session=session, principal=principal)
        if filters.is_empty()
        else _count_states(session=session, settings=settings, principal=principal, filters=filters)
    )
    response = render(
        request,
        "act/work_orders.html",
        {
            "principal": principal,
            "columns": columns,
            "board": board,
            "countdown": {o.id: _countdown(o.due_at, now) for o in orders},
            "counts": counts,
            "kpis": kpis.order_kpis(session=session, principal=principal, at=now),
            "bar": bar,
            "error": error,
            "filtered": not filters.is_empty(),
        },
    )
    if error:
        response.status_code = 422
    return response


def _count_states(
    *, session: Session, settings: Settings, principal: Principal, filters: Any
) -> dict[str, int]:
    counts: dict[str, int] = {}
    for order in _filtered_orders(
        session=session, settings=settings, principal=principal, filters=filters, limit=None
    ):
        counts[order.state] = counts.get(order.state, 0) + 1
    return counts


def _filter_checks(checks: Any, settings: Settings, filters: Any) -> Any:
    """Keep the supervision checks inside the bar's region and local date range."""
    import pyarrow as pa
    import pyarrow.compute as pc

    mask = None
    for name in ("province", "city", "district"):
        value = getattr(filters, name)
        if value:
            cond = pc.equal(checks.column(name), value)
            mask = cond if mask is None else pc.and_(mask, cond)
    start, end = _local_bounds(settings, filters)
    for bound, op in ((start, pc.greater_equal), (end, pc.less)):
        if bound is not None:
            cond = op(checks.column("requested_at"), pa.scalar(bound, pa.timestamp("us", "UTC")))
            mask = cond if mask is None else pc.and_(mask, cond)
    if mask is None:
        return checks
    return checks.filter(pc.fill_null(mask, False))


COMMITMENT_TABLES = ("compliance", "violations", "commitments")


@pages.get("/commitments", response_class=HTMLResponse, response_model=None)
def commitments_page(
    request: Request,
    principal: Principal | None = Depends(optional_principal),
    settings: Settings = Depends(get_settings),
) -> Response:
    """Show the commitments with their compliance per rule (filter bar; CSV/Excel download)."""
    from voxloop.errors import UnusableInputError
    from voxloop.web import charts
    from voxloop.web.export import audited_export, export_format, export_table
    from voxloop.web.schemas import PageFilters
    from voxloop.web.service import filter_bar, language, render, request_filters, translate

    if principal is None:
        return _login_redirect(request)
    lang = language(request)
    bar = filter_bar(request, principal)
    error = None
    try:
        filters = request_filters(request, principal, PageFilters)
        fmt = export_format(request)
    except UnusableInputError as exc:
        filters, fmt, error = PageFilters(), None, str(exc)
    checks = _filter_checks(_checks(settings, principal), settings, filters)
    rules = supervision.compliance(checks)
    book = load_commitments()
    if fmt is not None:
        table = export_table(request, COMMITMENT_TABLES)
        found: list[dict[str, Any]] = []
        header: list[str]
        rows: list[tuple[object, ...]]
        if table == "compliance":
            header = ["rule", "name", "checked", "violations", "pending", "compliance_rate"]
            rows = [
                (
                    r["rule"],
                    r["name"][lang],
                    r["checked"],
                    r["violations"],
                    r["pending"],
                    r["compliance_rate"],
                )
                for r in rules
            ]
        elif table == "violations":
            found = supervision.violations(checks)
            header = [
                "rule",
                "commitment_id",
                "customer_id",
                "province",
                "city",
                "district",
                "requested_at",
                "deadline",
                "done_at",
                "reason",
                "event_ids",
            ]
            rows = [
                tuple(",".join(v[c] or []) if c == "event_ids" else v[c] for c in header)
                for v in found
            ]
        else:
            header = ["id", "name", "hours", "calendar", "rule"]
            rows = [(c.id, c.name[lang], c.hours, c.calendar, c.rule) for c in book.commitments]
        return audited_export(
            request,
            principal=principal,
            fmt=fmt,
            table=f"commitments.{table}",
            header=header,
            rows=rows,
            filters=filters.model_dump(mode="json", by_alias=True, exclude_defaults=True),
            customer_ids=(lambda: [v["customer_id"] for v in found]) if found else None,
        )
    chart = charts.bar_chart(
        [f"{r['rule']} {r['name'][lang]}" for r in rules],
        [round(100 * (r["compliance_rate"] or 0), 1) for r in rules],
        title=translate("act.commitments.chart", lang),
        empty_message=translate("act.no_data", lang),
    )
    response = render(
        request,
        "act/commitments.html",
        {
            "book": book,
            "rules": rules,
            "chart": chart,
            "violations": supervision.violations(checks)[:50],
            "bar": bar,
            "error": error,
        },
    )
    if error:
        response.status_code = 422
    return response
