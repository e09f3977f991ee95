"""Work orders: create (idempotent), transition (optimistic concurrency), assign, comment,
SLA tick, verification of fixes and regression on new voices.  Every change is audited.

Mutating functions commit their own unit of work, so the audit entry and the change it
records are always written together (or not at all).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, func, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified
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

_AUDIT_TABLE: Table = AuditEntry.__table__  # type: ignore[assignment]


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
    """Append one entry to the audit log (written in the caller's transaction)."""
    # A plain INSERT on the table: nothing reads the entry back, so the ORM's unit of work
    # (identity map, RETURNING of the id) was pure cost on every change.
    session.execute(
        insert(_AUDIT_TABLE),
        {
            "at": at or _now(),
            "actor": actor,
            "action": action,
            "object_type": object_type,
            "object_id": object_id,
            "detail": json.dumps(detail or {}, ensure_ascii=False, default=str),
        },
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
        # Only the id: most keys are new, and loading a whole order row to learn that is waste.
        existing_id = session.scalar(
            select(WorkOrder.id).where(WorkOrder.idempotency_key == data.idempotency_key)
        )
        if existing_id is not None:
            return get_order(session=session, principal=principal, order_id=existing_id), False
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
    order = _apply_transition(
        session=session,
        principal=principal,
        order_id=order_id,
        to=to,
        version=version,
        reason=reason,
        notes=notes,
        at=at,
        policy=policy,
    )
    _commit(session)
    return order


def _apply_transition(
    *,
    session: Session,
    principal: Principal,
    order_id: str,
    to: str,
    version: int | None,
    reason: str | None,
    notes: str | None,
    at: datetime | None,
    policy: VerificationPolicy | None,
) -> WorkOrder:
    """Do what ``transition`` does, without committing (the caller commits once)."""
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
    return on_new_voices_for_problems(
        session=session, voices=[(problem_id, voice_id, customer_id, at)]
    )


def problems_with_orders(*, session: Session, problem_ids: Sequence[str] | None) -> set[str]:
    """Return which of ``problem_ids`` (``None``: any problem) have work orders."""
    if problem_ids is None:
        return {
            ref
            for ref in session.scalars(
                select(WorkOrder.source_ref).where(WorkOrder.source_kind == "problem").distinct()
            )
            if ref
        }
    found: set[str] = set()
    ids = list(dict.fromkeys(problem_ids))
    for start in range(0, len(ids), 500):
        found.update(
            ref
            for ref in session.scalars(
                select(WorkOrder.source_ref).where(
                    WorkOrder.source_kind == "problem",
                    WorkOrder.source_ref.in_(ids[start : start + 500]),
                )
            )
            if ref
        )
    return found


def on_new_voices_for_problems(
    *,
    session: Session,
    voices: Sequence[tuple[str, str, str | None, datetime]],
) -> list[str]:
    """Link new ``(problem_id, voice_id, customer_id, received_at)`` voices to problem orders.

    Every order of the voice's problem gets the voice (and its customer) linked; an order
    that was resolved, verified or closed before the voice arrived is reopened as
    regressed.  One transaction for the whole batch; returns the ids of the orders
    reopened.
    """
    by_problem: dict[str, list[WorkOrder]] = {}
    wanted = sorted({v[0] for v in voices})
    for start in range(0, len(wanted), 500):
        for order in session.scalars(
            select(WorkOrder)
            .where(
                WorkOrder.source_kind == "problem",
                WorkOrder.source_ref.in_(wanted[start : start + 500]),
            )
            .order_by(WorkOrder.created_at, WorkOrder.id)
        ):
            by_problem.setdefault(order.source_ref or "", []).append(order)
    reopened: list[str] = []
    for problem_id, voice_id, customer_id, at in sorted(voices, key=lambda v: (v[3], v[1])):
        for order in by_problem.get(problem_id, []):
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
                detail={
                    "voice_id": voice_id,
                    "customer_id": customer_id,
                    "problem_id": problem_id,
                },
                at=at,
            )
            if order.state in states.DONE_STATES and order.resolved_at and at >= order.resolved_at:
                order.regressed = True
                order.resolution_reason = "regression"
                _move(session, order, states.REOPENED, at, reason="regression", voice_id=voice_id)
                reopened.append(order.id)
    _commit(session)
    return reopened


# ---------------------------------------------------------------------------
# Actions where the data is: orders of a problem or an alert, linking, resolving with a
# fix note, and what verification and regression say about the fix.


def source_orders(
    *, session: Session, principal: Principal, source_kind: str, source_ref: str
) -> list[WorkOrder]:
    """Return the orders opened from one problem or alert that the principal sees, oldest first."""
    require(principal, "read")
    return list(
        session.scalars(
            select(WorkOrder)
            .where(
                WorkOrder.source_kind == source_kind,
                WorkOrder.source_ref == source_ref,
                scope_filter(principal, WorkOrder.province, WorkOrder.city),
            )
            .order_by(WorkOrder.created_at, WorkOrder.id)
        )
    )


def link_voices(
    *,
    session: Session,
    principal: Principal,
    order_id: str,
    version: int | None,
    voice_ids: Sequence[str],
    customer_ids: Sequence[str] = (),
    at: datetime | None = None,
) -> tuple[WorkOrder, int]:
    """Link more voices (and their customers) to an order; return (order, links added).

    ``customer_ids`` line up with ``voice_ids`` (empty string: no customer).  Voices the
    order already covers are skipped.  The caller checks that the voices lie in the
    principal's region (``voxloop.act.sources.order_for_voices`` does).  The order's
    version must be current and moves on, so two people linking at once do not both
    believe they saw the same order.
    """
    require(principal, "write")
    if customer_ids and len(customer_ids) != len(voice_ids):
        raise ValueError("customer_ids must line up with voice_ids")
    order = get_order(session=session, principal=principal, order_id=order_id)
    _check_version(order, version)
    at = at or _now()
    linked = {
        v
        for v in session.scalars(
            select(WorkOrderLink.voice_id).where(WorkOrderLink.order_id == order.id)
        )
        if v
    }
    customers = list(customer_ids) or [""] * len(voice_ids)
    fresh = [
        (v, c) for v, c in dict(zip(voice_ids, customers, strict=True)).items() if v not in linked
    ]
    for voice_id, customer_id in fresh:
        session.add(
            WorkOrderLink(
                order_id=order.id, voice_id=voice_id, customer_id=customer_id or None, added_at=at
            )
        )
    if fresh:
        order.updated_at = at
        # Links are rows of their own: mark the order changed so its version moves on
        # even when ``at`` equals the last update time.
        flag_modified(order, "updated_at")
    _flush(session)
    audit(
        session=session,
        actor=principal.username,
        action="order.link",
        object_type="work_order",
        object_id=order.id,
        detail={
            "voice_ids": [v for v, _ in fresh][:50],
            "added": len(fresh),
            "version": order.version,
        },
        at=at,
    )
    _commit(session)
    return order, len(fresh)


def resolve_orders(
    *,
    session: Session,
    principal: Principal,
    orders: Sequence[tuple[str, int]],
    fix_note: str,
    reason: str = "fixed",
    at: datetime | None = None,
    policy: VerificationPolicy | None = None,
) -> list[WorkOrder]:
    """Resolve ``(order id, version)`` orders with a fix note, all or none; start verification.

    Each order must be at the version given and allowed to move to ``resolved``; the
    callbacks / re-surveys of every linked customer are created in the same transaction.
    """
    require(principal, "write")
    note = fix_note.strip()
    if not note:
        raise ValueError("fix_note: describe the fix (it is kept with the order)")
    if not orders:
        raise ValueError("orders: name at least one order to resolve")
    at = at or _now()
    done: list[WorkOrder] = []
    try:
        for order_id, version in orders:
            done.append(
                _apply_transition(
                    session=session,
                    principal=principal,
                    order_id=order_id,
                    to=states.RESOLVED,
                    version=version,
                    reason=reason,
                    notes=note,
                    at=at,
                    policy=policy,
                )
            )
    except Exception:
        session.rollback()
        raise
    _commit(session)
    return done


def verification_summary(*, session: Session, orders: Sequence[WorkOrder]) -> dict[str, Any]:
    """Return, per order and in total, how the fix is verified and whether it regressed.

    Per order: customers affected (linked), callback / re-survey tasks by state, answers
    saying fixed / not fixed, voices linked after the fix, and the regression flag.
    """
    rows: list[dict[str, Any]] = []
    total = Counter[str]()
    for order in orders:
        links = order_links(session=session, order_id=order.id)
        tasks = verification_tasks(session=session, order_id=order.id)
        customers = {link.customer_id for link in links if link.customer_id}
        resolved_at = order.resolved_at
        after_fix = (
            sum(1 for link in links if link.voice_id and link.added_at > resolved_at)
            if resolved_at is not None
            else 0
        )
        counts = {
            "customers": len(customers),
            "voices": sum(1 for link in links if link.voice_id),
            "tasks": sum(1 for t in tasks if t.state != "suppressed"),
            "pending": sum(1 for t in tasks if t.state == "pending"),
            "fixed": sum(1 for t in tasks if t.state == "answered" and t.satisfied),
            "not_fixed": sum(1 for t in tasks if t.state == "answered" and t.satisfied is False),
            "suppressed": sum(1 for t in tasks if t.state == "suppressed"),
            "voices_after_fix": after_fix,
        }
        total.update(counts)
        total["regressed"] += int(order.regressed)
        rows.append(
            {
                "order_id": order.id,
                "state": order.state,
                "version": order.version,
                "regressed": order.regressed,
                "resolved_at": resolved_at.isoformat() if resolved_at else None,
                "reopened_at": order.reopened_at.isoformat() if order.reopened_at else None,
                "fix_note": order.resolution_notes,
                **counts,
                "tasks_list": [
                    {
                        "id": t.id,
                        "customer_id": t.customer_id,
                        "kind": t.kind,
                        "state": t.state,
                        "satisfied": t.satisfied,
                    }
                    for t in tasks[:200]
                ],
            }
        )
    answered = total["fixed"] + total["not_fixed"]
    summary: dict[str, Any] = {
        "orders": len(rows),
        "open": sum(1 for o in orders if o.state in states.OPEN_STATES),
        **{
            k: int(total[k])
            for k in (
                "customers",
                "voices",
                "tasks",
                "pending",
                "fixed",
                "not_fixed",
                "suppressed",
                "voices_after_fix",
                "regressed",
            )
        },
        "fixed_share": (total["fixed"] / answered) if answered else None,
    }
    return {"summary": summary, "orders": rows}


def form_token(*, secret_key: str, session_value: str | None) -> str:
    """Return the anti-CSRF token of a dashboard form: an HMAC of the session cookie.

    A page posts it back in a hidden field; a cross-site page cannot read the cookie,
    so it cannot compute the token (the ``SameSite=Lax`` session cookie is the first
    guard, this is the second).  In dev mode without a cookie the token is fixed per key.
    """
    basis = session_value or "dev-mode-without-session"
    return hmac.new(secret_key.encode(), f"form|{basis}".encode(), hashlib.sha256).hexdigest()


def check_form_token(*, secret_key: str, session_value: str | None, token: str | None) -> None:
    """Raise ``PermissionDeniedError`` unless ``token`` is this session's form token."""
    expected = form_token(secret_key=secret_key, session_value=session_value)
    if not token or not hmac.compare_digest(expected, token):
        raise PermissionDeniedError(
            "csrf: the form token is missing or belongs to another session; reload the page"
        )


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
