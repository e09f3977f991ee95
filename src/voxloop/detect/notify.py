"""Alerts in the operational store and their webhook delivery through an outbox.

Raising an alert and queueing its notification happen in one transaction; a separate
delivery pass posts queued messages and marks them delivered only after a 2xx answer, so
delivery is at least once and survives restarts.  Failures are retried with exponential
backoff (capped), up to ``max_attempts``.

A message that used up its attempts without a 2xx answer is a *dead letter*: it stays in
the outbox (``attempts >= max_attempts`` and no ``delivered_at``, with its ``last_error``)
until an operator re-queues it with ``voxloop detect outbox --retry ID`` or
``--retry-all``, which resets its attempts.  Giving up and re-queueing are both logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import false, select, true
from sqlalchemy.orm import Session, sessionmaker

from voxloop.detect.alerts import SurgeAlert
from voxloop.detect.models import Alert, OutboxMessage
from voxloop.detect.series import GRANULARITY_SECONDS, LOCAL_OFFSET_S
from voxloop.errors import InvalidTransitionError, NotFoundError

logger = logging.getLogger(__name__)

#: Delivery attempts before a message becomes a dead letter.
MAX_ATTEMPTS = 10


#: Appends one audit-log entry in the caller's transaction (``voxloop.act.service.audit``:
#: keyword arguments session, actor, action, object_type, object_id, detail, at).
AuditWriter = Callable[..., None]

#: Allowed alert state changes.
TRANSITIONS = {
    "open": {"acknowledged", "closed"},
    "acknowledged": {"closed", "open"},
    "closed": set(),
}


def bucket_start(bucket: int, granularity: str) -> datetime:
    """Return the UTC start of a local-time bucket."""
    width = GRANULARITY_SECONDS[granularity]
    return datetime.fromtimestamp(bucket * width - LOCAL_OFFSET_S, tz=UTC)


def alert_payload(alert: Alert) -> dict[str, Any]:
    """Return the JSON view of an alert (API and webhook body)."""
    return {
        "id": alert.id,
        "state": alert.state,
        "root_cause": alert.root_cause,
        "values": json.loads(alert.values_json),
        "granularity": alert.granularity,
        "start": bucket_start(alert.first_bucket, alert.granularity).isoformat(),
        "last_window": bucket_start(alert.last_bucket, alert.granularity).isoformat(),
        "windows": alert.windows,
        "actual": alert.actual,
        "expected": round(alert.expected, 3),
        "excess": round(alert.actual - alert.expected, 3),
        "share_of_excess": round(alert.share, 3),
        "pvalue": alert.pvalue,
        "typical_cases": json.loads(alert.typical_json),
    }


def record_alerts(
    *,
    session: Session,
    alerts: list[SurgeAlert],
    granularity: str,
    merge_gap: int = 24,
    webhook_url: str | None = None,
    typical: dict[str, list[dict[str, Any]]] | None = None,
) -> list[Alert]:
    """Store surge alerts, extending an open alert with the same root cause if recent.

    Each new alert queues a webhook message in the same transaction (when a URL is set).
    """
    stored: list[Alert] = []
    now = datetime.now(UTC)
    for a in alerts:
        existing = session.scalars(
            select(Alert)
            .where(
                Alert.dedup_key == f"{granularity}:{a.root_cause}",
                Alert.state != "closed",
                Alert.last_bucket >= a.first_bucket - merge_gap,
            )
            .order_by(Alert.id.desc())
        ).first()
        if existing is not None:
            if a.last_bucket > existing.last_bucket:
                existing.last_bucket = a.last_bucket
                existing.windows += a.windows
                existing.actual += a.actual
                existing.expected += a.expected
                existing.updated_at = now
            stored.append(existing)
            continue
        row = Alert(
            dedup_key=f"{granularity}:{a.root_cause}",
            root_cause=a.root_cause,
            values_json=json.dumps(a.values, ensure_ascii=False),
            granularity=granularity,
            state="open",
            first_bucket=a.first_bucket,
            last_bucket=a.last_bucket,
            windows=a.windows,
            actual=a.actual,
            expected=a.expected,
            share=a.share,
            pvalue=a.pvalue,
            typical_json=json.dumps((typical or {}).get(a.root_cause, []), ensure_ascii=False),
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        if webhook_url:
            session.add(
                OutboxMessage(
                    alert_id=row.id,
                    event="alert.opened",
                    url=webhook_url,
                    payload=json.dumps(
                        {"event": "alert.opened", "alert": alert_payload(row)}, ensure_ascii=False
                    ),
                    attempts=0,
                    next_attempt_at=now,
                )
            )
        stored.append(row)
    return stored


def transition_alert(*, session: Session, alert_id: int, state: str) -> Alert:
    """Move an alert to ``state`` (open, acknowledged, closed) if the table allows it."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFoundError(f"alert {alert_id} not found")
    if state not in TRANSITIONS:
        raise InvalidTransitionError(f"unknown alert state {state!r}")
    if state not in TRANSITIONS[alert.state]:
        raise InvalidTransitionError(f"alert {alert_id}: {alert.state} -> {state} not allowed")
    alert.state = state
    alert.updated_at = datetime.now(UTC)
    return alert


def backoff(attempts: int, *, base_s: float = 30.0, cap_s: float = 3600.0) -> timedelta:
    """Return the wait before retry number ``attempts`` (exponential, capped)."""
    return timedelta(seconds=min(cap_s, base_s * 2 ** max(attempts - 1, 0)))


Sender = Callable[[str, bytes], int]


def http_sender(timeout_s: float = 10.0) -> Sender:
    """Return a sender that POSTs JSON and returns the HTTP status."""

    def send(url: str, body: bytes) -> int:
        response = httpx.post(
            url, content=body, headers={"content-type": "application/json"}, timeout=timeout_s
        )
        return response.status_code

    return send


def deliver_outbox(
    *,
    sessions: sessionmaker[Session],
    send: Sender | None = None,
    now: datetime | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    limit: int = 100,
) -> dict[str, int]:
    """Post due outbox messages; mark 2xx as delivered, reschedule the rest with backoff.

    A message failing its ``max_attempts``-th attempt is left as a dead letter (logged as
    a warning); ``outbox_messages`` lists it and ``retry_outbox`` re-queues it.
    """
    sender = send or http_sender()
    at = now or datetime.now(UTC)
    delivered = failed = 0
    with sessions() as session:
        due = session.scalars(
            select(OutboxMessage)
            .where(
                OutboxMessage.delivered_at.is_(None),
                OutboxMessage.next_attempt_at <= at,
                OutboxMessage.attempts < max_attempts,
            )
            .order_by(OutboxMessage.id)
            .limit(limit)
        ).all()
        for msg in due:
            msg.attempts += 1
            try:
                status = sender(msg.url, msg.payload.encode("utf-8"))
                error = None if 200 <= status < 300 else f"HTTP {status}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            if error is None:
                msg.delivered_at = at
                msg.last_error = None
                delivered += 1
            else:
                msg.last_error = error
                msg.next_attempt_at = at + backoff(msg.attempts)
                failed += 1
                if msg.attempts >= max_attempts:
                    logger.warning(
                        "outbox message %s (alert %s, %s) is dead after %d attempts: %s",
                        msg.id,
                        msg.alert_id,
                        msg.event,
                        msg.attempts,
                        error,
                    )
            # Commit each message so a crash mid-pass never re-marks a delivered one.
            session.commit()
    return {"delivered": delivered, "failed": failed}


@dataclass(frozen=True)
class OutboxEntry:
    """An undelivered outbox message as the operator sees it."""

    id: int
    alert_id: int
    event: str
    url: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    dead: bool


def outbox_messages(
    *, session: Session, dead_only: bool = False, max_attempts: int = MAX_ATTEMPTS
) -> list[OutboxEntry]:
    """List undelivered messages (pending and dead letters), oldest first."""
    dead = OutboxMessage.attempts >= max_attempts
    query = (
        select(OutboxMessage)
        .where(OutboxMessage.delivered_at.is_(None), dead if dead_only else true())
        .order_by(OutboxMessage.id)
    )
    return [
        OutboxEntry(
            id=m.id,
            alert_id=m.alert_id,
            event=m.event,
            url=m.url,
            attempts=m.attempts,
            next_attempt_at=m.next_attempt_at,
            last_error=m.last_error,
            dead=m.attempts >= max_attempts,
        )
        for m in session.scalars(query)
    ]


def retry_outbox(
    *,
    session: Session,
    audit: AuditWriter,
    ids: list[int] | None = None,
    actor: str = "cli",
    now: datetime | None = None,
    max_attempts: int = MAX_ATTEMPTS,
) -> list[int]:
    """Re-queue dead letters (the given ids, or all when ``ids`` is None); return their ids.

    Attempts restart from zero and the message is due at once; the last error is kept
    until the next attempt replaces it.  Asking for a message that is delivered or not
    dead is refused, so a retry never sends a message twice by mistake.  Each re-queue is
    written with ``audit`` (``voxloop.act.service.audit``: the audit log is the act
    domain's table, above detection, so the caller passes its writer in).
    """
    at = now or datetime.now(UTC)
    query = select(OutboxMessage).where(
        OutboxMessage.delivered_at.is_(None), OutboxMessage.attempts >= max_attempts
    )
    if ids is not None:
        query = query.where(OutboxMessage.id.in_(ids) if ids else false())
    rows = list(session.scalars(query.order_by(OutboxMessage.id)))
    if ids is not None:
        missing = sorted(set(ids) - {m.id for m in rows})
        if missing:
            raise NotFoundError(f"no dead outbox message with id {', '.join(map(str, missing))}")
    for msg in rows:
        logger.info(
            "outbox message %s (alert %s) re-queued by %s after %d attempts; last error: %s",
            msg.id,
            msg.alert_id,
            actor,
            msg.attempts,
            msg.last_error,
        )
        # A re-sent alert is a deliberate human act, so it joins the append-only audit log.
        audit(
            session=session,
            actor=actor,
            action="outbox.retry",
            object_type="outbox_message",
            object_id=f"outbox:{msg.id}",  # ids of other object types share the column
            detail={
                "alert_id": msg.alert_id,
                "attempts": msg.attempts,
                "last_error": msg.last_error,
            },
            at=at,
        )
        msg.attempts = 0
        msg.next_attempt_at = at
    return [m.id for m in rows]
