"""Alerts in the operational store (SQLite and PostgreSQL) and webhook outbox delivery."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlalchemy import select

from voxloop.config import Settings
from voxloop.detect.alerts import SurgeAlert
from voxloop.detect.models import Alert, OutboxMessage
from voxloop.detect.notify import (
    backoff,
    deliver_outbox,
    record_alerts,
    transition_alert,
)
from voxloop.errors import InvalidTransitionError, NotFoundError
from voxloop.store.service import make_engine, make_sessionmaker, migrate


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, object]] = []  # noqa: RUF012
    fail_next = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if type(self).fail_next > 0:
            type(self).fail_next -= 1
            self.send_response(503)
        else:
            type(self).received.append(json.loads(body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def webhook() -> Iterator[str]:
    _Hook.received = []
    _Hook.fail_next = 0
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()
    server.server_close()


def _alert(first: int, last: int, key: str = "scenario=BILL|province=江苏") -> SurgeAlert:
    return SurgeAlert(
        root_cause=key,
        values={"scenario": "BILL", "province": "江苏"},
        share=0.9,
        anchor="scenario=BILL",
        first_bucket=first,
        last_bucket=last,
        actual=40.0,
        expected=4.0,
        pvalue=1e-9,
    )


def test_alerts_dedupe_transition_and_deliver(any_db_settings: Settings, webhook: str) -> None:
    migrate(any_db_settings)
    sessions = make_sessionmaker(make_engine(any_db_settings))
    typical = {"scenario=BILL|province=江苏": [{"voice_id": "v1", "text": "乱扣费"}]}
    with sessions.begin() as s:
        first = record_alerts(
            session=s,
            alerts=[_alert(100, 101)],
            granularity="hour",
            webhook_url=webhook,
            typical=typical,
        )
    with sessions.begin() as s:
        # The same root cause a few windows later extends the alert; no new message.
        again = record_alerts(
            session=s, alerts=[_alert(105, 106)], granularity="hour", webhook_url=webhook
        )
        assert again[0].id == first[0].id
        other = record_alerts(
            session=s, alerts=[_alert(105, 105, "scenario=HBB")], granularity="hour"
        )
        assert other[0].id != first[0].id
    with sessions() as s:
        rows = s.scalars(select(Alert).order_by(Alert.id)).all()
        assert [r.windows for r in rows] == [2, 1]
        assert rows[0].last_bucket == 106 and rows[0].actual == 80.0
        assert json.loads(rows[0].typical_json)[0]["voice_id"] == "v1"
        assert len(s.scalars(select(OutboxMessage)).all()) == 1

    # The receiver is down once: the message is retried after its backoff.
    _Hook.fail_next = 1
    now = datetime.now(UTC)
    assert deliver_outbox(sessions=sessions, now=now) == {"delivered": 0, "failed": 1}
    assert deliver_outbox(sessions=sessions, now=now) == {"delivered": 0, "failed": 0}
    # A fresh engine (a restarted process) finds the pending message and delivers it.
    restarted = make_sessionmaker(make_engine(any_db_settings))
    later = now + backoff(1) + timedelta(seconds=1)
    assert deliver_outbox(sessions=restarted, now=later) == {"delivered": 1, "failed": 0}
    assert deliver_outbox(sessions=restarted, now=later) == {"delivered": 0, "failed": 0}
    assert len(_Hook.received) == 1
    body = _Hook.received[0]
    assert body["event"] == "alert.opened"
    assert body["alert"]["root_cause"] == "scenario=BILL|province=江苏"  # type: ignore[index]

    with sessions.begin() as s:
        alert_id = first[0].id
        assert transition_alert(session=s, alert_id=alert_id, state="acknowledged").state == (
            "acknowledged"
        )
        transition_alert(session=s, alert_id=alert_id, state="closed")
        with pytest.raises(InvalidTransitionError, match="closed -> open"):
            transition_alert(session=s, alert_id=alert_id, state="open")
        with pytest.raises(NotFoundError):
            transition_alert(session=s, alert_id=99_999, state="closed")
    with sessions.begin() as s:
        # A closed alert is not extended: the same cause raises a new one.
        new = record_alerts(session=s, alerts=[_alert(110, 110)], granularity="hour")
        assert new[0].id not in (first[0].id, other[0].id)


def test_backoff_grows_and_is_capped() -> None:
    assert backoff(1) < backoff(2) < backoff(3)
    assert backoff(50) == timedelta(hours=1)
