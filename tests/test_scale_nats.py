"""``voxloop consume`` against the real local NATS JetStream server: crash, restart, count."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from voxloop.config import Settings
from voxloop.ingest.broker import load_stats
from voxloop.ingest.service import lake_rows
from voxloop.store.service import lake_connection

NATS_URL = "nats://127.0.0.1:4222"
PUBLISHED = 20_000
REPEATS = 500  # valid records published twice: the second copy is a duplicate
NOT_JSON = 300  # poison: not JSON at all
BAD_FIELDS = 200  # JSON objects the validator rejects


def _nats_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=1):
            return True
    except OSError:
        return False


needs_nats = pytest.mark.skipif(not _nats_up(), reason="no NATS server on 127.0.0.1:4222")


def _voice(i: int) -> dict[str, object]:
    return {
        "id": f"n{i}",
        "source": "hotline",
        "kind": "complaint",
        "received_at": f"2026-09-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00+08:00",
        "customer_id": f"139{i:08d}",
        "province": "江苏",
        "city": "南京",
        "channel": "app",
        "text": f"第{i}条：宽带又断了，联系电话1390000{i % 10000:04d}",
    }


def _payloads() -> tuple[list[bytes], set[str]]:
    """Return the messages in publish order and the ids that must end up stored."""
    valid = PUBLISHED - REPEATS - NOT_JSON - BAD_FIELDS
    out: list[bytes] = []
    repeats = not_json = bad_fields = 0
    for i in range(valid):
        out.append(json.dumps(_voice(i), ensure_ascii=False).encode())
        if i % 37 == 0 and repeats < REPEATS:
            repeats += 1
            out.append(json.dumps(_voice(i), ensure_ascii=False).encode())
        if i % 61 == 0 and not_json < NOT_JSON:
            not_json += 1
            out.append(b"{not json " + str(i).encode())
        if i % 89 == 0 and bad_fields < BAD_FIELDS:
            bad_fields += 1
            bad = _voice(10_000_000 + i)
            bad["received_at"] = "sometime last week"
            out.append(json.dumps(bad, ensure_ascii=False).encode())
    assert len(out) == PUBLISHED, len(out)
    return out, {f"n{i}" for i in range(valid)}


async def _publish(stream: str, subject: str, payloads: list[bytes]) -> None:
    import nats

    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[subject.replace("*", ">")])
    for n, data in enumerate(payloads):
        await nc.publish(subject.replace("*", "in"), data)
        if n % 2000 == 0:
            await nc.flush()
    await nc.flush()
    for _ in range(100):  # the stream stores core publishes asynchronously
        if (await js.stream_info(stream)).state.messages == len(payloads):
            break
        await asyncio.sleep(0.1)
    assert (await js.stream_info(stream)).state.messages == len(payloads)
    await nc.close()


async def _delete(stream: str) -> None:
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


@pytest.fixture
def stream() -> Iterator[str]:
    name = "T" + uuid.uuid4().hex[:12].upper()
    yield name
    with contextlib.suppress(Exception):  # already gone; nothing else to clean
        asyncio.run(_delete(name))


def _consumer(settings: Settings, stream: str, *extra: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "VOXLOOP_HOME": str(settings.home),
        "VOXLOOP_ENV": "test",
        "VOXLOOP_SECRET_KEY": settings.secret_key,
    }
    cmd = [str(Path(sys.executable).parent / "voxloop"), "consume", NATS_URL]
    cmd += ["--stream", stream, "--subject", f"{stream.lower()}.>", "--no-stages", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@needs_nats
def test_crash_mid_stream_loses_nothing_and_stores_nothing_twice(
    settings: Settings, stream: str
) -> None:
    payloads, expected_ids = _payloads()
    asyncio.run(_publish(stream, f"{stream.lower()}.*", payloads))

    first = _consumer(settings, stream, "--batch", "500", "--ack-wait", "4")
    deadline = time.monotonic() + 120
    while lake_rows(settings=settings, table="voices") < 4_000:
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "consumer stored too little in 120 s"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)  # mid-way, no chance to acknowledge cleanly
    first.wait(timeout=30)
    assert lake_rows(settings=settings, table="voices") < len(expected_ids)

    second = _consumer(settings, stream, "--batch", "500", "--ack-wait", "4", "--idle-exit", "3")
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err

    con = lake_connection(settings, ("voices", "quarantine"))
    try:
        total, distinct = con.execute("SELECT count(*), count(DISTINCT id) FROM voices").fetchone()
        ids = {r[0] for r in con.execute("SELECT id FROM voices").fetchall()}
        q = con.execute(
            "SELECT source_row, reason FROM quarantine WHERE source_file = $s",
            {"s": f"nats:{stream}"},
        ).fetchall()
    finally:
        con.close()
    # Nothing lost, nothing stored twice.
    assert total == distinct == len(expected_ids)
    assert ids == expected_ids
    rows = [r[0] for r in q]
    assert len(rows) == len(set(rows)) == NOT_JSON + BAD_FIELDS
    reasons = [r[1] for r in q]
    assert sum(r.startswith("message is not valid JSON") for r in reasons) == NOT_JSON
    assert total + len(q) + REPEATS == PUBLISHED

    # The counters persisted across the crash add up and cover every published message.
    (stats,) = [s for s in load_stats(settings) if s["source"] == f"nats:{stream}"]
    assert stats["consumed"] == stats["stored"] + stats["quarantined"] + stats["duplicates"]
    assert stats["consumed"] >= PUBLISHED and stats["duplicates"] >= REPEATS
    assert stats["lag"] == 0
    assert json.loads(out.strip().splitlines()[-1])["lag"] == 0


@needs_nats
def test_sigterm_stops_gracefully(settings: Settings, stream: str) -> None:
    asyncio.run(_publish(stream, f"{stream.lower()}.*", [json.dumps(_voice(1)).encode()]))
    proc = _consumer(settings, stream)
    deadline = time.monotonic() + 60
    while lake_rows(settings=settings, table="voices") < 1:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["stored"] == 1


@needs_nats
def test_metrics_endpoint_reports_consumer_counts(settings: Settings, stream: str) -> None:
    from tests.conftest import admin_client
    from voxloop.api.app import create_app

    asyncio.run(_publish(stream, f"{stream.lower()}.*", [json.dumps(_voice(2)).encode(), b"\xff"]))
    proc = _consumer(settings, stream, "--idle-exit", "2")
    proc.communicate(timeout=120)
    assert proc.returncode == 0
    client = admin_client(create_app(settings))
    res = client.get("/api/v1/metrics")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/plain")
    label = f'consumer="nats-{stream}-voxloop"'
    lines = dict(line.rsplit(" ", 1) for line in res.text.splitlines() if label in line)
    assert lines[f"voxloop_consumer_stored_total{{{label}}}"] == "1"
    assert lines[f"voxloop_consumer_quarantined_total{{{label}}}"] == "1"
    assert lines[f"voxloop_consumer_lag{{{label}}}"] == "0"


def test_one_ingest_session_serves_many_batches_and_sees_other_writers(
    settings: Settings,
) -> None:
    """A consumer's long-lived session dedups across its batches and against other writers."""
    from voxloop.ingest.broker import Message, _columns, _flatten, ingest_messages
    from voxloop.ingest.readers import flatten_record, records_table
    from voxloop.ingest.schemas import RecordKind
    from voxloop.ingest.service import IngestSession, ingest_records

    def msg(row: int, rec: object, redelivered: bool = False) -> Message:
        return Message(
            row=row, data=json.dumps(rec, ensure_ascii=False).encode(), redelivered=redelivered
        )

    first = [msg(i, _voice(i)) for i in range(1, 101)]
    first.append(Message(row=101, data=b"\xffnot json"))
    with IngestSession(settings=settings, kind=RecordKind.voice, source_file="nats:S") as session:
        a = ingest_messages(
            settings=settings,
            kind=RecordKind.voice,
            source="nats:S",
            messages=first,
            session=session,
        )
        assert (a.read, a.stored, a.quarantined, a.duplicates) == (101, 100, 1, 0)
        # Another writer (an HTTP push) stores voices 200-209 between two batches.
        pushed = ingest_records(
            settings=settings, kind=RecordKind.voice, records=[_voice(i) for i in range(200, 210)]
        )
        assert pushed.stored == 10
        # Redelivery of voice 1 and of the poison message, the pushed voices, new voices.
        second = [msg(1, _voice(1), redelivered=True)]
        second.append(Message(row=101, data=b"\xffnot json", redelivered=True))
        second += [msg(300 + i, _voice(i)) for i in range(200, 210)]
        second += [msg(400 + i, _voice(i)) for i in range(400, 420)]
        b = ingest_messages(
            settings=settings,
            kind=RecordKind.voice,
            source="nats:S",
            messages=second,
            session=session,
        )
    assert (b.read, b.stored, b.quarantined, b.duplicates) == (32, 20, 0, 12)
    assert lake_rows(settings=settings, table="voices") == 130
    assert a.batch_id != b.batch_id  # each broker batch is its own lineage batch

    # The consumer's fast flattening is the readers' rule, value for value, and its
    # column-wise table is the readers' table of the flattened records.
    recs: list[dict[str, Any]] = [
        _voice(5),
        {"id": "x", "n": 1, "f": 2.0, "g": 0.5, "b": True, "none": None, "attributes": {"k": "中"}},
        {"id": "y", "region": {"province": "江苏", "city": "南京"}, "plan": {"name": "5G"}},
        {"id": "z", "tags": ["a", 1], "text": "t"},
        {"province": "浙江", "region": {"province": "江苏"}, "id": "w"},
        {},
        {"extra": None},
    ]
    for rec in recs:
        assert _flatten(rec) == flatten_record(rec)
    for some in (recs, recs[::-1], recs[:1], []):
        assert _columns(some).equals(records_table([flatten_record(r) for r in some]))


@needs_nats
def test_lost_messages_of_a_pull_request_do_not_stall_the_consumer(
    settings: Settings, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages a request delivered but the client lost come back; the consumer finishes.

    A slow client that discards messages (or a connection that drops mid-delivery) leaves
    its pull request short of its last messages, with no end status, since the server
    delivered the whole batch. The consumer once waited on that request forever: the lost
    messages stayed unacknowledged, and JetStream redelivers only on a new pull request.
    """
    import nats.aio.client

    from voxloop.ingest.broker import consume_nats

    payloads = [json.dumps(_voice(i), ensure_ascii=False).encode() for i in range(2_500)]
    asyncio.run(_publish(stream, f"{stream.lower()}.*", payloads))
    dropped: list[bytes] = []
    subscribe = nats.aio.client.Client.subscribe

    async def lossy_subscribe(self: Any, subject: str, *args: Any, **kwargs: Any) -> Any:
        cb = kwargs.get("cb")
        if cb is None or not subject.startswith("_INBOX."):
            return await subscribe(self, subject, *args, **kwargs)

        delivered = 0

        async def lossy(msg: Any) -> None:
            nonlocal delivered
            if msg.headers is None:  # a message, not a status
                delivered += 1
                if 990 < delivered <= 1_000:  # the first request's last ten are lost
                    dropped.append(msg.data)
                    return
            await cb(msg)

        kwargs["cb"] = lossy
        return await subscribe(self, subject, *args, **kwargs)

    monkeypatch.setattr(nats.aio.client.Client, "subscribe", lossy_subscribe)
    started = time.monotonic()
    stats = consume_nats(
        settings=settings,
        url=NATS_URL,
        stream=stream,
        subject=f"{stream.lower()}.>",
        batch_size=1_000,
        idle_exit=2.0,
        progress=0,
        ack_wait=2.0,
    )
    assert len(dropped) == 10
    assert time.monotonic() - started < 60
    con = lake_connection(settings, ("voices",))
    try:
        total, distinct = con.execute("SELECT count(*), count(DISTINCT id) FROM voices").fetchone()
    finally:
        con.close()
    # The ten lost messages were redelivered (after ack_wait) on a later request and stored.
    assert total == distinct == len(payloads)
    assert stats.stored == len(payloads) and stats.lag == 0
