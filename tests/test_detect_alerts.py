"""Alerts in the operational store (SQLite and PostgreSQL), webhook delivery, dead letters."""

from __future__ import annotations

import json
import logging
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
    MAX_ATTEMPTS,
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


def test_outbox_dead_letters_are_listed_and_requeued(
    any_db_settings: Settings,
    webhook: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from typer.testing import CliRunner

    from voxloop.cli.main import _register_domains, app

    migrate(any_db_settings)
    sessions = make_sessionmaker(make_engine(any_db_settings))
    with sessions.begin() as s:
        record_alerts(session=s, alerts=[_alert(200, 200)], granularity="hour", webhook_url=webhook)
        record_alerts(
            session=s,
            alerts=[_alert(200, 200, "scenario=HBB")],
            granularity="hour",
            webhook_url=webhook,
        )
    # The receiver answers 503 to the first message's ten attempts (a dead letter) and to
    # the second message's first attempt (retried with backoff, then delivered).
    _Hook.fail_next = MAX_ATTEMPTS + 1
    at = datetime.now(UTC)
    with caplog.at_level(logging.WARNING, logger="voxloop.detect.notify"):
        for _ in range(MAX_ATTEMPTS):
            deliver_outbox(sessions=sessions, now=at, limit=1)
            at += timedelta(days=1)
        deliver_outbox(sessions=sessions, now=at)
    assert any("is dead after 10 attempts" in r.getMessage() for r in caplog.records)
    assert deliver_outbox(sessions=sessions, now=at + timedelta(days=9)) == {
        "delivered": 1,
        "failed": 0,
    }

    monkeypatch.setenv("VOXLOOP_HOME", str(any_db_settings.home))
    monkeypatch.setenv("VOXLOOP_ENV", "test")
    monkeypatch.setenv("VOXLOOP_SECRET_KEY", "cli-test-secret")
    if any_db_settings.database_url:
        monkeypatch.setenv("VOXLOOP_DATABASE_URL", any_db_settings.database_url)
    _register_domains()
    runner = CliRunner()
    listed = runner.invoke(app, ["detect", "outbox", "--json"])
    assert listed.exit_code == 0, listed.output
    (dead,) = json.loads(listed.output)["messages"]
    assert dead["status"] == "dead" and dead["attempts"] == MAX_ATTEMPTS
    assert dead["last_error"] == "HTTP 503"
    table = runner.invoke(app, ["detect", "outbox", "--dead"])
    assert "dead" in table.output and "HTTP 503" in table.output
    # Dead letters are never retried on their own.
    assert deliver_outbox(sessions=sessions, now=at + timedelta(days=30)) == {
        "delivered": 0,
        "failed": 0,
    }
    missing = runner.invoke(app, ["detect", "outbox", "--retry", "99999"])
    assert missing.exit_code == 1 and "no dead outbox message" in missing.output
    with caplog.at_level(logging.INFO, logger="voxloop.detect.notify"):
        retried = runner.invoke(app, ["detect", "outbox", "--retry", str(dead["id"])])
    assert retried.exit_code == 0 and f"re-queued 1 message(s): {dead['id']}" in retried.output
    assert any("re-queued by cli:" in r.getMessage() for r in caplog.records)
    from voxloop.act.service import audit_trail

    with sessions() as session:
        (entry,) = audit_trail(session=session, object_id=f"outbox:{dead['id']}")
        assert entry.action == "outbox.retry" and entry.actor.startswith("cli:")
        assert json.loads(entry.detail)["attempts"] == MAX_ATTEMPTS
    pending = json.loads(runner.invoke(app, ["detect", "outbox", "--json"]).output)["messages"]
    assert [(m["status"], m["attempts"]) for m in pending] == [("pending", 0)]
    assert deliver_outbox(sessions=sessions) == {"delivered": 1, "failed": 0}
    assert len(_Hook.received) == 2
    assert "every message was delivered" in runner.invoke(app, ["detect", "outbox"]).output
    assert runner.invoke(app, ["detect", "outbox", "--retry-all"]).output.startswith("re-queued 0")
