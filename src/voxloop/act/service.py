"""Work orders: create (idempotent), transition (optimistic concurrency), assign, comment,
SLA tick, verification of fixes and regression on new voices.  Every change is audited.

Mutating functions commit their own unit of work, so the audit entry and the change it
records are always written together (or not at all).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from voxloop.act import states
from voxloop.act.access import SYSTEM, Principal, require, scope_filter
from voxloop.act.commitments import CommitmentBook, due_for_order, load_commitments
from voxloop.act.models import (
    AuditEntry,
    Notification,
    User,
    VerificationTask,
    WorkOrder,
    WorkOrderComment,
    WorkOrderLink,
)
from voxloop.act.routing import RoutingTable, load_routing, route
from voxloop.act.schemas import OrderCreate, VerificationPolicy
from voxloop.errors import ConflictError, NotFoundError, PermissionDeniedError


def _now() -> datetime:
    return datetime.now(UTC)


def audit(
    *,
    session: Session,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Append one entry to the audit log (flushed with the caller's transaction)."""
    session.add(
        AuditEntry(
            at=at or _now(),
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=object_id,
            detail=json.dumps(detail or {}, ensure_ascii=False, default=str),
        )
    )


def record_access(
    *, session: Session, principal: Principal, customer_ids: Sequence[str], purpose: str
) -> None:
    """Audit that ``principal`` viewed the records of ``customer_ids`` (other domains call this)."""
    at = _now()
    for customer_id in dict.fromkeys(customer_ids):
        audit(
            session=session,
            actor=principal.username,
            action="customer.read",
            object_type="customer",
            object_id=customer_id,
            detail={"purpose": purpose},
            at=at,
        )
    session.commit()


def _commit(session: Session) -> None:
    try:
        session.commit()
    except (StaleDataError, OperationalError) as exc:
        session.rollback()
        # A concurrent writer changed the row first (or held the SQLite write lock past the
        # busy timeout): the caller retries from a fresh read, exactly as for a stale version.
        raise ConflictError(f"concurrent update, reload and retry ({type(exc).__name__})") from exc


def _flush(session: Session) -> None:
    try:
        session.flush()
    except (StaleDataError, OperationalError) as exc:
        session.rollback()
        raise ConflictError(f"concurrent update, reload and retry ({type(exc).__name__})") from exc


def _visible(principal: Principal, order: WorkOrder) -> bool:
    return principal.sees(order.province, order.city)


def get_order(*, session: Session, principal: Principal, order_id: str) -> WorkOrder:
    """Return an order the principal may see; out-of-scope orders look absent (404)."""
    require(principal, "read")
    order = session.get(WorkOrder, order_id, populate_existing=True)
    if order is None or not _visible(principal, order):
        raise NotFoundError(f"work order {order_id!r} not found")
    return order


def list_orders(
    *,
    session: Session,
    principal: Principal,
    state: str | None = None,
    scenario: str | None = None,
    province: str | None = None,
    queue: str | None = None,
    assignee_id: int | None = None,
    source_ref: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[WorkOrder]:
    """Return the orders in the principal's scope matching the filters, newest first."""
    require(principal, "read")
    query = select(WorkOrder).where(scope_filter(principal, WorkOrder.province, WorkOrder.city))
    for column, value in (
        (WorkOrder.state, state),
        (WorkOrder.scenario, scenario),
        (WorkOrder.province, province),
        (WorkOrder.queue, queue),
        (WorkOrder.assignee_id, assignee_id),
        (WorkOrder.source_ref, source_ref),
    ):
        if value is not None:
            query = query.where(column == value)
    query = query.order_by(WorkOrder.created_at.desc(), WorkOrder.id).limit(limit).offset(offset)
    return list(session.scalars(query))


def order_links(*, session: Session, order_id: str) -> list[WorkOrderLink]:
    """Return the customers/voices an order covers."""
    return list(
        session.scalars(
            select(WorkOrderLink)
            .where(WorkOrderLink.order_id == order_id)
            .order_by(WorkOrderLink.id)
        )
    )


def principal_sees(user: User, province: str | None, city: str | None) -> bool:
    """Return whether ``user``'s region scope covers ``province``/``city``."""
    return Principal(None, user.username, user.role, user.province, user.city).sees(province, city)


def create_order(
    *,
    session: Session,
    principal: Principal,
    data: OrderCreate,
    at: datetime | None = None,
    routing: RoutingTable | None = None,
    book: CommitmentBook | None = None,
) -> tuple[WorkOrder, bool]:
    """Create a routed order with its SLA due time; return (order, created).

    A retried create with the same ``idempotency_key`` returns the first order and
    ``created=False`` instead of making a duplicate.
    """
    require(principal, "write")
    if data.idempotency_key:
        existing = session.scalar(
            select(WorkOrder).where(WorkOrder.idempotency_key == data.idempotency_key)
        )
        if existing is not None:
            return get_order(session=session, principal=principal, order_id=existing.id), False
    province, city = data.province, data.city
    if principal.province is not None:
        province = province or principal.province
        city = city or principal.city
    if not principal.sees(province, city):
        raise PermissionDeniedError(
            f"{principal.username!r} may not create orders in {province or '-'}/{city or '-'}"
        )
    at = at or _now()
    decision = route(
        table=routing or load_routing(),
        scenario=data.scenario,
        province=province,
        city=city,
        channel=data.channel,
        segment=data.segment,
        source_kind=data.source_kind,
    )
    commitment_id, due_at = due_for_order(
        book=book or load_commitments(), scenario=data.scenario, channel=data.channel, start=at
    )
    assignee_id = None
    if data.assignee:
        if data.assignee != principal.username:
            require(principal, "assign")
        assignee = session.scalar(select(User).where(User.username == data.assignee))
        if assignee is None:
            raise NotFoundError(f"assignee {data.assignee!r}: no such user")
        if not principal_sees(assignee, province, city):
            raise PermissionDeniedError(
                f"{data.assignee!r} works outside {province or '-'} and cannot take this order"
            )
        assignee_id = assignee.id
    order = WorkOrder(
        id=uuid.uuid4().hex,
        idempotency_key=data.idempotency_key,
        title=data.title,
        description=data.description,
        source_kind=data.source_kind,
        source_ref=data.source_ref,
        scenario=data.scenario,
        subcategory=data.subcategory,
        channel=data.channel,
        segment=data.segment,
        province=province,
        city=city,
        district=data.district,
        priority=data.priority,
        state=states.ASSIGNED if assignee_id is not None else states.NEW,
        assignee_id=assignee_id,
        assigned_at=at if assignee_id is not None else None,
        department=decision.department,
        team=decision.team,
        queue=decision.queue,
        routing_rule=decision.rule_id,
        commitment_id=commitment_id,
        due_at=due_at,
        escalation_level=0,
        regressed=False,
        created_by=principal.username,
        created_at=at,
        updated_at=at,
    )
    session.add(order)
    links = _link_rows(order.id, data.voice_ids, data.customer_ids, at)
    session.add_all(links)
    audit(
        session=session,
        actor=principal.username,
        action="order.create",
        object_type="work_order",
        object_id=order.id,
        detail={
            "state": order.state,
            "version": 1,
            "routing_rule": decision.rule_id,
            "queue": decision.queue,
            "commitment": commitment_id,
            "due_at": due_at,
            "links": len(links),
        },
        at=at,
    )
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        if data.idempotency_key:
            existing = session.scalar(
                select(WorkOrder).where(WorkOrder.idempotency_key == data.idempotency_key)
            )
            if existing is not None:
                return existing, False
        raise ConflictError(f"work order could not be stored: {exc.orig}") from exc
    except OperationalError as exc:
        session.rollback()
        raise ConflictError(f"store busy, retry ({exc.orig})") from exc
    return order, True


def _link_rows(
    order_id: str, voice_ids: Sequence[str], customer_ids: Sequence[str], at: datetime
) -> list[WorkOrderLink]:
    # A voice and its customer share a row when both lists line up (one order per voice);
    # otherwise each id gets its own row.
    rows: list[WorkOrderLink] = []
    if voice_ids and len(voice_ids) == len(customer_ids):
        for voice_id, customer_id in zip(voice_ids, customer_ids, strict=True):
            rows.append(
                WorkOrderLink(
                    order_id=order_id,
                    voice_id=voice_id,
                    customer_id=customer_id or None,
                    added_at=at,
                )
            )
        return rows
    rows.extend(
        WorkOrderLink(order_id=order_id, voice_id=v, added_at=at) for v in dict.fromkeys(voice_ids)
    )
    rows.extend(
        WorkOrderLink(order_id=order_id, customer_id=c, added_at=at)
        for c in dict.fromkeys(customer_ids)
    )
    return rows


def _enter(order: WorkOrder, target: str, at: datetime) -> None:
    order.state = target
    setattr(order, states.TIMESTAMP_COLUMN[target], at)
    order.updated_at = at


def _move(
    session: Session,
    order: WorkOrder,
    target: str,
    at: datetime,
    *,
    reason: str | None,
    actor: str = SYSTEM.username,
    **detail: Any,
) -> None:
    """Move ``order`` to ``target`` and audit it; the system acts unless ``actor`` is given."""
    previous = order.state
    _enter(order, target, at)
    _flush(session)
    audit(
        session=session,
        actor=actor,
        action="order.transition",
        object_type="work_order",
        object_id=order.id,
        detail={
            "from": previous,
            "to": target,
            "version": order.version,
            "reason": reason,
            **detail,
        },
        at=at,
    )


def _check_version(order: WorkOrder, version: int | None) -> None:
    if version is not None and version != order.version:
        raise ConflictError(
            f"work order {order.id!r} is at version {order.version}, not {version}: "
            "it was changed by someone else; reload and retry"
        )


def transition(
    *,
    session: Session,
    principal: Principal,
    order_id: str,
    to: str,
    version: int | None,
    reason: str | None = None,
    notes: str | None = None,
    at: datetime | None = None,
    policy: VerificationPolicy | None = None,
) -> WorkOrder:
    """Move an order to state ``to`` if the table allows it and ``version`` is current."""
    require(principal, "write")
    order = get_order(session=session, principal=principal, order_id=order_id)
    _check_version(order, version)
    current = order.state
    states.check_transition(current, to)
    if to in (states.RESOLVED, states.CLOSED) and not reason:
        raise ValueError(f"moving to {to!r} needs a resolution reason")
    at = at or _now()
    if to in (states.RESOLVED, states.CLOSED):
        order.resolution_reason = reason
        if notes is not None:
            order.resolution_notes = notes
    if to == states.REOPENED and reason == "regression":
        order.regressed = True
    _move(session, order, to, at, reason=reason, actor=principal.username)
    if to == states.RESOLVED:
        _start_verification(session=session, order=order, at=at, policy=policy)
    _commit(session)
    return order


def assign(
    *,
    session: Session,
    principal: Principal,
    order_id: str,
    assignee: str,
    version: int | None,
    at: datetime | None = None,
) -> WorkOrder:
    """Give an order to ``assignee``; new, escalated and reopened orders become ``assigned``."""
    require(principal, "assign")
    order = get_order(session=session, principal=principal, order_id=order_id)
    _check_version(order, version)
    user = session.scalar(select(User).where(User.username == assignee))
    if user is None:
        raise NotFoundError(f"assignee {assignee!r}: no such user")
    if not principal_sees(user, order.province, order.city):
        raise PermissionDeniedError(
            f"{assignee!r} works outside {order.province or '-'} and cannot take this order"
        )
    at = at or _now()
    previous = order.state
    order.assignee_id = user.id
    if order.state in (states.NEW, states.ESCALATED, states.REOPENED):
        _enter(order, states.ASSIGNED, at)
    else:
        order.updated_at = at
    _flush(session)
    audit(
        session=session,
        actor=principal.username,
        action="order.assign",
        object_type="work_order",
        object_id=order.id,
        detail={
            "from": previous,
            "to": order.state,
            "version": order.version,
            "assignee": assignee,
        },
        at=at,
    )
    _commit(session)
    return order


def add_comment(
    *, session: Session, principal: Principal, order_id: str, body: str, at: datetime | None = None
) -> WorkOrderComment:
    """Add a note to an order the principal may change."""
    require(principal, "write")
    order = get_order(session=session, principal=principal, order_id=order_id)
    at = at or _now()
    comment = WorkOrderComment(
        order_id=order.id, author=principal.username, body=body, created_at=at
    )
    session.add(comment)
    audit(
        session=session,
        actor=principal.username,
        action="order.comment",
        object_type="work_order",
        object_id=order.id,
        detail={"chars": len(body)},
        at=at,
    )
    _commit(session)
    return comment


def comments(*, session: Session, order_id: str) -> list[WorkOrderComment]:
    """Return an order's comments, oldest first."""
    return list(
        session.scalars(
            select(WorkOrderComment)
            .where(WorkOrderComment.order_id == order_id)
            .order_by(WorkOrderComment.id)
        )
    )


def audit_trail(*, session: Session, object_id: str) -> list[AuditEntry]:
    """Return the audit entries of one object, oldest first."""
    return list(
        session.scalars(
            select(AuditEntry).where(AuditEntry.object_id == object_id).order_by(AuditEntry.id)
        )
    )


# ---------------------------------------------------------------------------
# SLA tick: reminders before the due time, escalation chain after it.


def _recipients(session: Session, specs: Sequence[str], order: WorkOrder) -> list[str]:
    names: list[str] = []
    for spec in specs:
        if spec.startswith("role:"):
            role = spec.split(":", 1)[1]
            for user in session.scalars(
                select(User).where(User.role == role, User.active.is_(True)).order_by(User.id)
            ):
                if principal_sees(user, order.province, order.city):
                    names.append(user.username)
        else:
            names.append(spec)
    return list(dict.fromkeys(names)) or list(specs)


def _notify(
    session: Session, order: WorkOrder, kind: str, level: int, recipients: list[str], at: datetime
) -> bool:
    exists = session.scalar(
        select(Notification.id).where(
            Notification.order_id == order.id,
            Notification.kind == kind,
            Notification.level == level,
        )
    )
    if exists is not None:
        return False
    session.add(
        Notification(
            order_id=order.id,
            kind=kind,
            level=level,
            recipients=json.dumps(recipients, ensure_ascii=False),
            created_at=at,
        )
    )
    audit(
        session=session,
        actor=SYSTEM.username,
        action=f"sla.{kind}",
        object_type="work_order",
        object_id=order.id,
        detail={"level": level, "recipients": recipients, "due_at": order.due_at},
        at=at,
    )
    return True


def tick(*, session: Session, at: datetime, book: CommitmentBook | None = None) -> dict[str, int]:
    """Send due reminders and escalate breached orders as of ``at``; safe to repeat."""
    book = book or load_commitments()
    horizon = at + timedelta(hours=book.reminder_before_hours)
    due_orders = list(
        session.scalars(
            select(WorkOrder)
            .where(
                WorkOrder.state.in_(states.OPEN_STATES),
                WorkOrder.due_at.is_not(None),
                WorkOrder.due_at <= horizon,
            )
            .order_by(WorkOrder.due_at)
        )
    )
    summary = {"checked": len(due_orders), "reminders": 0, "breached": 0, "escalations": 0}
    for order in due_orders:
        assert order.due_at is not None
        if order.due_at > at:
            recipients = _recipients(session, ["role:agent", "role:supervisor"], order)
            summary["reminders"] += _notify(session, order, "reminder", 0, recipients, at)
            continue
        if order.breached_at is None:
            order.breached_at = at
            summary["breached"] += 1
        for step in book.chain(order.commitment_id):
            if order.due_at + timedelta(hours=step.after_hours) > at:
                break
            recipients = _recipients(session, step.recipients, order)
            if _notify(session, order, "escalation", step.level, recipients, at):
                summary["escalations"] += 1
                order.escalation_level = max(order.escalation_level, step.level)
        if order.state != states.ESCALATED and states.ESCALATED in states.TRANSITIONS[order.state]:
            _move(session, order, states.ESCALATED, at, reason="sla_breach")
        else:
            _flush(session)
    _commit(session)
    return summary


# ---------------------------------------------------------------------------
# Verifying the fix: callbacks / re-surveys after resolution, regression on new voices.


def _start_verification(
    *, session: Session, order: WorkOrder, at: datetime, policy: VerificationPolicy | None
) -> int:
    policy = policy or VerificationPolicy()
    customers = [
        c
        for c in dict.fromkeys(
            link.customer_id for link in order_links(session=session, order_id=order.id)
        )
        if c
    ]
    if not customers:
        return 0
    already = set(
        session.scalars(
            select(VerificationTask.customer_id).where(
                VerificationTask.order_id == order.id, VerificationTask.state != "suppressed"
            )
        )
    )
    window_start = at - timedelta(days=policy.suppression_days)
    recent = set(
        session.scalars(
            select(VerificationTask.customer_id).where(
                VerificationTask.customer_id.in_(customers),
                VerificationTask.state != "suppressed",
                VerificationTask.created_at > window_start,
            )
        )
    )
    kind = "resurvey" if order.source_kind == "problem" else "callback"
    created = 0
    for customer_id in customers:
        if customer_id in already:
            continue
        suppressed = customer_id in recent
        session.add(
            VerificationTask(
                order_id=order.id,
                customer_id=customer_id,
                kind=kind,
                state="suppressed" if suppressed else "pending",
                created_at=at,
            )
        )
        created += not suppressed
    return created


def pending_verification_tasks(
    *, session: Session, principal: Principal, limit: int = 200
) -> list[VerificationTask]:
    """Return pending callback / re-survey tasks of orders in the principal's region."""
    require(principal, "read")
    return list(
        session.scalars(
            select(VerificationTask)
            .join(WorkOrder, WorkOrder.id == VerificationTask.order_id)
            .where(
                VerificationTask.state == "pending",
                scope_filter(principal, WorkOrder.province, WorkOrder.city),
            )
            .order_by(VerificationTask.created_at, VerificationTask.id)
            .limit(limit)
        )
    )


def verification_tasks(*, session: Session, order_id: str) -> list[VerificationTask]:
    """Return an order's callback / re-survey tasks."""
    return list(
        session.scalars(
            select(VerificationTask)
            .where(VerificationTask.order_id == order_id)
            .order_by(VerificationTask.id)
        )
    )


def record_answer(
    *,
    session: Session,
    principal: Principal,
    task_id: int,
    satisfied: bool,
    score: float | None = None,
    note: str | None = None,
    at: datetime | None = None,
) -> VerificationTask:
    """Record a customer's answer to a verification task."""
    require(principal, "write")
    task = session.get(VerificationTask, task_id)
    if task is None:
        raise NotFoundError(f"verification task {task_id} not found")
    get_order(session=session, principal=principal, order_id=task.order_id)
    if task.state != "pending":
        raise ConflictError(f"verification task {task_id} is {task.state}, not pending")
    at = at or _now()
    task.state = "answered"
    task.satisfied = satisfied
    task.score = score
    task.note = note
    task.answered_at = at
    audit(
        session=session,
        actor=principal.username,
        action="verification.answer",
        object_type="work_order",
        object_id=task.order_id,
        detail={"task": task_id, "customer_id": task.customer_id, "satisfied": satisfied},
        at=at,
    )
    _commit(session)
    return task


def evaluate_verification(
    *, session: Session, at: datetime, policy: VerificationPolicy | None = None
) -> dict[str, int]:
    """Verify resolved orders with enough positive answers and a quiet period; reopen failures."""
    policy = policy or VerificationPolicy()
    quiet_since = at - timedelta(days=policy.quiet_days)
    resolved = list(
        session.scalars(
            select(WorkOrder).where(
                WorkOrder.state == states.RESOLVED, WorkOrder.resolved_at <= quiet_since
            )
        )
    )
    summary = {"checked": len(resolved), "verified": 0, "reopened": 0, "waiting": 0}
    for order in resolved:
        tasks = [
            t
            for t in verification_tasks(session=session, order_id=order.id)
            if t.state != "suppressed" and t.created_at >= (order.resolved_at or at)
        ]
        answered = [t for t in tasks if t.state == "answered"]
        needed = min(policy.min_answers, len(tasks))
        if len(answered) < needed:
            summary["waiting"] += 1
            continue
        positive = sum(1 for t in answered if t.satisfied)
        share = positive / len(answered) if answered else 1.0
        target = states.VERIFIED if share >= policy.min_positive_share else states.REOPENED
        if target == states.REOPENED:
            order.resolution_reason = "verification_failed"
        _move(
            session,
            order,
            target,
            at,
            reason="verification",
            answers=len(answered),
            positive_share=round(share, 3),
        )
        summary["verified" if target == states.VERIFIED else "reopened"] += 1
    _commit(session)
    return summary


def on_new_voice_for_problem(
    *,
    session: Session,
    problem_id: str,
    voice_id: str,
    at: datetime,
    customer_id: str | None = None,
) -> list[str]:
    """Attach a new voice to the orders of ``problem_id``; reopen resolved ones as regressed.

    Returns the ids of the orders reopened.  Called by the detect domain when a new voice
    is assigned to a known problem.
    """
    orders = list(
        session.scalars(
            select(WorkOrder).where(
                WorkOrder.source_kind == "problem", WorkOrder.source_ref == problem_id
            )
        )
    )
    reopened: list[str] = []
    for order in orders:
        session.add(
            WorkOrderLink(
                order_id=order.id, voice_id=voice_id, customer_id=customer_id, added_at=at
            )
        )
        audit(
            session=session,
            actor=SYSTEM.username,
            action="order.link",
            object_type="work_order",
            object_id=order.id,
            detail={"voice_id": voice_id, "customer_id": customer_id, "problem_id": problem_id},
            at=at,
        )
        if order.state in states.DONE_STATES and order.resolved_at and at >= order.resolved_at:
            order.regressed = True
            order.resolution_reason = "regression"
            _move(session, order, states.REOPENED, at, reason="regression", voice_id=voice_id)
            reopened.append(order.id)
    _commit(session)
    return reopened


def open_orders_for_violations(
    *,
    session: Session,
    principal: Principal,
    violations: Sequence[dict[str, Any]],
    at: datetime | None = None,
) -> dict[str, int]:
    """Open one work order per commitment violation (idempotent: re-running opens none twice).

    ``violations`` are rows of :func:`voxloop.act.supervision.violations`; the order is
    keyed ``violation:<rule>:<request event id>`` and covers the violation's customer.
    """
    from voxloop.act.supervision import RULE_SCENARIO

    summary = {"created": 0, "existing": 0, "out_of_scope": 0}
    for v in violations:
        if not principal.sees(v.get("province"), v.get("city")):
            summary["out_of_scope"] += 1
            continue
        request_event = v["event_ids"][0]
        data = OrderCreate(
            title=f"{v['rule']} {v['reason']}"[:300],
            description=f"events: {', '.join(v['event_ids'])}",
            source_kind="alert",
            source_ref=f"{v['rule']}:{request_event}",
            scenario=RULE_SCENARIO.get(v["rule"]),
            province=v.get("province"),
            city=v.get("city"),
            customer_ids=[v["customer_id"]] if v.get("customer_id") else [],
            idempotency_key=f"violation:{v['rule']}:{request_event}",
        )
        _, created = create_order(session=session, principal=principal, data=data, at=at)
        summary["created" if created else "existing"] += 1
    return summary


def count_orders(*, session: Session, principal: Principal) -> dict[str, int]:
    """Count the principal's visible orders per state."""
    rows = session.execute(
        select(WorkOrder.state, func.count())
        .where(scope_filter(principal, WorkOrder.province, WorkOrder.city))
        .group_by(WorkOrder.state)
    ).all()
    return {state: int(n) for state, n in rows}
