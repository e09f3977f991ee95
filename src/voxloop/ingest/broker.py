"""Streaming ingest from NATS JetStream and Kafka into the lake, through the push path.

Both consumers share one contract: fetch a bounded batch, store it through the ingest
path HTTP pushes use (validate, pseudonymise, mask, deduplicate, write), and only then
acknowledge/commit. A crash between store and acknowledgement makes the broker redeliver;
the lake's dedup rule turns the stored rows into duplicates, and quarantine rows already
written for a redelivered message are skipped, so the lake holds each message once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voxloop.config import Settings
from voxloop.ingest.readers import RawBatch, Reject, flatten_record, records_table
from voxloop.ingest.schemas import IngestResult, RecordKind

logger = logging.getLogger(__name__)

#: Metric names and help lines, in the order the Prometheus text lists them.
METRICS = {
    "consumed": "Broker messages taken into the ingest path.",
    "stored": "Messages stored in the lake.",
    "quarantined": "Messages quarantined with a reason (poison or invalid).",
    "duplicates": "Messages dropped as duplicates (redelivery or repeated records).",
    "batches": "Batches stored and acknowledged.",
    "lag": "Messages waiting in the broker after the last batch.",
}


@dataclass(frozen=True)
class Message:
    """One broker message: its position (becomes the quarantine source row) and payload."""

    row: int
    data: bytes
    redelivered: bool = False


@dataclass
class ConsumeStats:
    """Running counts of one consumer, written to disk for ``GET /api/v1/metrics``."""

    name: str
    source: str
    consumed: int = 0
    stored: int = 0
    quarantined: int = 0
    duplicates: int = 0
    batches: int = 0
    lag: int = 0
    started: float = field(default_factory=time.time)
    updated: float = 0.0

    def add(self, result: IngestResult, *, messages: int, lag: int) -> None:
        """Add one stored batch's counts."""
        self.consumed += messages
        self.stored += result.stored
        self.quarantined += result.quarantined
        self.duplicates += result.duplicates
        self.batches += 1
        self.lag = lag
        self.updated = time.time()

    def rate(self, since: int = 0) -> float:
        """Return messages per second consumed since the start (beyond ``since``)."""
        return (self.consumed - since) / max(time.time() - self.started, 1e-9)


def stats_dir(settings: Settings) -> Path:
    """Return the folder where consumers publish their counts."""
    return settings.home / "consumers"


def _save_stats(settings: Settings, stats: ConsumeStats) -> None:
    folder = stats_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{stats.name}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(asdict(stats)), encoding="utf-8")
    # Atomic replace: the metrics endpoint never reads a half-written file.
    tmp.replace(folder / f"{stats.name}.json")


def load_stats(settings: Settings) -> list[dict[str, Any]]:
    """Return the last published counts of every consumer of this home."""
    folder = stats_dir(settings)
    out: list[dict[str, Any]] = []
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # a consumer replacing its file right now; the next scrape sees it
    return out


def prometheus_text(stats: Sequence[dict[str, Any]]) -> str:
    """Render consumer counts in the Prometheus text exposition format."""
    lines: list[str] = []
    for name, help_text in METRICS.items():
        kind = "gauge" if name == "lag" else "counter"
        metric = f"voxloop_consumer_{name}" + ("" if kind == "gauge" else "_total")
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}"]
        for s in stats:
            label = str(s.get("name", "")).replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{metric}{{consumer="{label}"}} {int(s.get(name, 0))}')
    return "\n".join(lines) + "\n"


def _already_quarantined(settings: Settings, source: str, rows: list[int]) -> set[int]:
    """Return which of ``rows`` of ``source`` already have quarantine rows."""
    from voxloop.ingest.service import QUARANTINE_TABLE
    from voxloop.store.service import lake_connection, part_files

    if not rows or not part_files(settings, QUARANTINE_TABLE):
        return set()
    con = lake_connection(settings, (QUARANTINE_TABLE,))
    try:
        found = con.execute(
            "SELECT DISTINCT source_row FROM quarantine WHERE source_file = $s "
            "AND list_contains($rows, source_row)",
            {"s": source, "rows": rows},
        ).fetchall()
    finally:
        con.close()
    return {int(r[0]) for r in found}


def ingest_messages(
    *,
    settings: Settings,
    kind: RecordKind,
    source: str,
    messages: Sequence[Message],
    engine: Any = None,
) -> IngestResult:
    """Store one batch of broker messages; poison messages are quarantined with a reason."""
    from voxloop.ingest.service import ingest_batches

    redelivered = [m.row for m in messages if m.redelivered]
    seen = _already_quarantined(settings, source, redelivered)
    good: list[dict[str, str | None]] = []
    rows: list[int] = []
    rejects: list[Reject] = []
    skipped = 0
    for m in messages:
        if m.row in seen:
            # Quarantined before the crash that caused this redelivery: as poison, or as an
            # invalid record by the ingest path. A stored message never has a quarantine row.
            skipped += 1
            continue
        reason: str | None
        try:
            rec = json.loads(m.data)
        except (ValueError, UnicodeDecodeError) as exc:
            rec, reason = None, f"message is not valid JSON: {exc}"
        else:
            reason = None if isinstance(rec, dict) else "message is not a JSON object"
        if reason is not None:
            raw = m.data.decode("utf-8", errors="replace")
            rejects.append(Reject(row=m.row, reason=reason, raw=json.dumps({"_message": raw})))
            continue
        assert isinstance(rec, dict)
        good.append(flatten_record(rec))
        rows.append(m.row)
    batch = RawBatch(
        table=records_table(good), rows=np.array(rows, dtype=np.int64), rejects=rejects
    )
    result = ingest_batches(
        settings=settings,
        kind=kind,
        batches=iter([batch]) if batch.read else iter([]),
        mapping=None,
        source_file=source,
        engine=engine,
    )
    # Invalid records (wrong fields) are quarantined by the ingest path itself; redelivered
    # messages quarantined already were counted as duplicates above.
    return result.add(IngestResult(read=skipped, duplicates=skipped))


class _Runner:
    """Shared loop state: stop flag, stage runner, progress line, stats file."""

    def __init__(
        self, *, settings: Settings, stats: ConsumeStats, stages: bool, progress: float
    ) -> None:
        from voxloop.api.service import StageRunner
        from voxloop.store.service import make_engine

        self.settings = settings
        self.stats = stats
        self.stop = threading.Event()
        self.stages = StageRunner(settings=settings) if stages else None
        self.engine = make_engine(settings)
        self.progress = progress
        self._last_report = time.time()
        previous = stats_dir(settings) / f"{stats.name}.json"
        if previous.is_file():
            # Counters survive restarts (Prometheus counters of one consumer never go down).
            try:
                before = json.loads(previous.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                before = {}
            for key in ("consumed", "stored", "quarantined", "duplicates", "batches"):
                setattr(stats, key, int(before.get(key, 0)))
        self._resumed = stats.consumed
        _save_stats(settings, stats)

    def store(self, kind: RecordKind, messages: Sequence[Message]) -> IngestResult:
        """Store one batch through the push path (the caller acknowledges afterwards)."""
        return ingest_messages(
            settings=self.settings,
            kind=kind,
            source=self.stats.source,
            messages=messages,
            engine=self.engine,
        )

    def done(self, result: IngestResult, *, messages: int, lag: int) -> None:
        """Count an acknowledged batch, schedule the stages and report progress."""
        self.stats.add(result, messages=messages, lag=lag)
        _save_stats(self.settings, self.stats)
        if result.stored and self.stages is not None:
            self.stages.request()  # coalesced like HTTP pushes: one run covers many batches
        now = time.time()
        if self.progress and now - self._last_report >= self.progress:
            self._last_report = now
            s = self.stats
            print(
                f"{s.name}: {s.consumed} consumed ({s.rate(self._resumed):.0f}/s), "
                f"{s.stored} stored, {s.quarantined} quarantined, "
                f"{s.duplicates} duplicates, lag {s.lag}",
                file=sys.stderr,
                flush=True,
            )

    def close(self, timeout: float = 600.0) -> None:
        """Wait for a pending stage run, then release the engine."""
        if self.stages is not None:
            self.stages.wait_idle(timeout)
        self.engine.dispose()


def _on_sigterm(stop: threading.Event) -> Callable[[int, Any], None]:
    def handler(signum: int, frame: Any) -> None:
        stop.set()  # finish, store and acknowledge the batch in hand, then leave

    return handler


def consume_nats(
    *,
    settings: Settings,
    url: str,
    stream: str,
    subject: str,
    durable: str = "voxloop",
    kind: RecordKind = RecordKind.voice,
    batch_size: int | None = None,
    stages: bool = True,
    idle_exit: float | None = None,
    progress: float = 5.0,
    stop: threading.Event | None = None,
    ack_wait: float = 60.0,
) -> ConsumeStats:
    """Consume a JetStream stream with a durable pull consumer until stopped; return counts."""
    stats = ConsumeStats(name=f"nats-{stream}-{durable}", source=f"nats:{stream}")
    runner = _Runner(settings=settings, stats=stats, stages=stages, progress=progress)
    if stop is not None:
        runner.stop = stop
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm(runner.stop))
    size = batch_size or settings.broker_batch_size
    try:
        asyncio.run(
            _nats_loop(
                runner=runner,
                url=url,
                stream=stream,
                subject=subject,
                durable=durable,
                kind=kind,
                size=size,
                idle_exit=idle_exit,
                ack_wait=ack_wait,
            )
        )
    finally:
        runner.close()
    return stats


async def _nats_loop(
    *,
    runner: _Runner,
    url: str,
    stream: str,
    subject: str,
    durable: str,
    kind: RecordKind,
    size: int,
    idle_exit: float | None,
    ack_wait: float,
) -> None:
    import nats
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.api import AckPolicy, ConsumerConfig
    from nats.js.errors import NotFoundError

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        try:
            await js.stream_info(stream)
        except NotFoundError:
            await js.add_stream(name=stream, subjects=[subject])
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            # Long enough to store a full batch; a crashed consumer's batch comes back then.
            ack_wait=ack_wait,
            # Backpressure: the server hands out no more than two batches unacknowledged.
            max_ack_pending=2 * size,
        )
        psub = await js.pull_subscribe(subject, durable=durable, stream=stream, config=config)
        idle_since = time.monotonic()
        loop = asyncio.get_running_loop()
        while not runner.stop.is_set():
            try:
                msgs = await psub.fetch(size, timeout=1.0)
            except NatsTimeout:
                msgs = []
            if not msgs:
                if idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                    info = await psub.consumer_info()
                    # Unacknowledged messages of a crashed predecessor come back after
                    # ack_wait: idle means nothing pending and nothing awaiting redelivery.
                    if not info.num_pending and not info.num_ack_pending:
                        return
                continue
            idle_since = time.monotonic()
            batch = [
                Message(
                    row=int(m.metadata.sequence.stream),
                    data=m.data,
                    redelivered=m.metadata.num_delivered > 1,
                )
                for m in msgs
            ]
            # The ingest path is blocking (DuckDB, Parquet); keep the event loop responsive.
            result = await loop.run_in_executor(None, runner.store, kind, batch)
            # Count before acknowledging: a crash in between recounts the batch as
            # duplicates on redelivery, so counters never miss a message.
            runner.done(result, messages=len(msgs), lag=int(msgs[-1].metadata.num_pending))
            for m in msgs:
                await m.ack()
            await nc.flush()
    finally:
        await nc.close()  # acks were flushed after each batch; drain would stall on the pull inbox


def consume_kafka(
    *,
    settings: Settings,
    bootstrap: str,
    topic: str,
    group: str = "voxloop",
    kind: RecordKind = RecordKind.voice,
    batch_size: int | None = None,
    stages: bool = True,
    idle_exit: float | None = None,
    progress: float = 5.0,
    stop: threading.Event | None = None,
) -> ConsumeStats:
    """Consume a Kafka topic in a consumer group, committing after each stored batch."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    stats = ConsumeStats(name=f"kafka-{topic}-{group}", source=f"kafka:{topic}")
    runner = _Runner(settings=settings, stats=stats, stages=stages, progress=progress)
    if stop is not None:
        runner.stop = stop
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm(runner.stop))
    size = batch_size or settings.broker_batch_size
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    idle_since = time.monotonic()
    try:
        while not runner.stop.is_set():
            # consume() returns at most `size` messages: the batch bound is the backpressure.
            msgs = list(consumer.consume(num_messages=size, timeout=1.0))
            errors = [m.error() for m in msgs if m.error() is not None]
            if errors:
                raise KafkaException(errors[0])
            msgs = [m for m in msgs if m.error() is None]
            if not msgs:
                if idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                    break
                continue
            idle_since = time.monotonic()
            # Offsets are per partition; the partition in the high bits keeps rows unique.
            batch = [
                Message(
                    row=(int(m.partition() or 0) << 40) | int(m.offset() or 0),
                    data=m.value() or b"",
                )
                for m in msgs
            ]
            # Kafka does not flag redeliveries, so every poison row is checked against the
            # quarantine already written.
            batch = [Message(row=b.row, data=b.data, redelivered=True) for b in batch]
            result = runner.store(kind, batch)
            lag = 0
            for tp in consumer.assignment():
                low, high = consumer.get_watermark_offsets(tp, cached=True)
                pos = consumer.position([TopicPartition(tp.topic, tp.partition)])[0].offset
                lag += max(0, high - max(pos, low)) if high >= 0 else 0
            runner.done(result, messages=len(msgs), lag=lag)
            # Commit only after the batch is stored (and counted): a crash replays it.
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
        runner.close()
    return stats
