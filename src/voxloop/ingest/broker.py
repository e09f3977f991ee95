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
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa
from pydantic_core import from_json

from voxloop.config import Settings
from voxloop.ingest.readers import (
    _FLATTEN,
    RawBatch,
    Reject,
    _text_value,
    flatten_record,
)
from voxloop.ingest.schemas import IngestResult, RecordKind

if TYPE_CHECKING:
    from voxloop.ingest.service import IngestSession

logger = logging.getLogger(__name__)

#: Keys whose object values ``flatten_record`` turns into columns.
_FLATTEN_KEYS = frozenset(_FLATTEN)

#: The readers' text form of nested values (``json.dumps(v, ensure_ascii=False, default=str)``).
_NESTED = json.JSONEncoder(ensure_ascii=False, default=str)

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


def _flatten(rec: dict[str, Any]) -> dict[str, str | None]:
    """Return ``flatten_record(rec)``, taking text and null values as they are (the usual case)."""
    flat: dict[str, str | None] = {}
    for key, value in rec.items():
        if value is None or type(value) is str:
            flat[key] = value
        elif key in _FLATTEN_KEYS and isinstance(value, dict):
            return flatten_record(rec)  # region/plan objects become columns: the readers' rule
        elif type(value) is dict or type(value) is list:
            # json.dumps(value, ensure_ascii=False, default=str) without a new encoder per call.
            flat[key] = _NESTED.encode(value)
        else:
            flat[key] = _text_value(value)
    return flat


def _columns(records: list[dict[str, Any]]) -> pa.Table:
    """Return ``records_table([flatten_record(r) for r in records])``, built column by column.

    Values go straight into the column lists, with no flattened copy of each record
    (except for records with ``region`` or ``plan`` objects). Columns keep the order in
    which their keys first appear, as in ``records_table``.
    """
    cols: dict[str, list[str | None]] = {}
    encode = _NESTED.encode
    for n, rec in enumerate(records):
        items: Any = rec.items()
        for key in _FLATTEN_KEYS:
            if type(rec.get(key)) is dict:
                # region/plan objects become columns: the readers' rule, on a copy.
                items = flatten_record(rec).items()
                break
        for key, value in items:
            if value is not None and type(value) is not str:
                # json.dumps(v, ensure_ascii=False, default=str), one encoder for all.
                is_nested = type(value) is dict or type(value) is list
                value = encode(value) if is_nested else _text_value(value)
            col = cols.get(key)
            if col is None:
                col = cols[key] = [None] * n
            elif len(col) < n:
                col.extend([None] * (n - len(col)))  # absent from the records in between
            col.append(value)
    total = len(records)
    for col in cols.values():
        if len(col) < total:
            col.extend([None] * (total - len(col)))
    string = pa.string()
    return pa.table({name: pa.array(col, string) for name, col in cols.items()})


def _decode(messages: Sequence[Message], skip: set[int]) -> tuple[RawBatch, int]:
    """Parse messages into one raw batch (poison ones as rejects); return it and the skipped."""
    good: list[dict[str, Any]] = []
    rows: list[int] = []
    rejects: list[Reject] = []
    skipped = 0
    # pydantic-core's parser (Rust, keys cached) takes half the time of json.loads here.
    loads = from_json
    for m in messages:
        if skip and m.row in skip:
            # Quarantined before the crash that caused this redelivery: as poison, or as an
            # invalid record by the ingest path. A stored message never has a quarantine row.
            skipped += 1
            continue
        reason: str | None
        try:
            rec = loads(m.data)
        except ValueError as exc:  # not JSON, or not UTF-8
            rec, reason = None, f"message is not valid JSON: {exc}"
        else:
            reason = None if type(rec) is dict else "message is not a JSON object"
        if reason is not None:
            raw = m.data.decode("utf-8", errors="replace")
            rejects.append(Reject(row=m.row, reason=reason, raw=json.dumps({"_message": raw})))
            continue
        good.append(rec)
        rows.append(m.row)
    batch = RawBatch(table=_columns(good), rows=np.array(rows, dtype=np.int64), rejects=rejects)
    return batch, skipped


def decode_messages(
    *, settings: Settings, source: str, messages: Sequence[Message]
) -> tuple[RawBatch, int]:
    """Parse a batch of broker messages; return the raw batch and how many were skipped.

    Poison messages become rejects with their reason. Redelivered messages that already
    have quarantine rows are skipped (counted as duplicates by ``store_messages``).
    """
    redelivered = [m.row for m in messages if m.redelivered]
    seen = _already_quarantined(settings, source, redelivered)
    return _decode(messages, seen)


def store_messages(*, session: IngestSession, batch: RawBatch, skipped: int = 0) -> IngestResult:
    """Store a decoded batch of broker messages through an open ingest session."""
    result = session.store(batch) if batch.read else IngestResult()
    # Invalid records (wrong fields) are quarantined by the ingest path itself; redelivered
    # messages quarantined already count as duplicates.
    return result.add(IngestResult(read=skipped, duplicates=skipped))


def ingest_messages(
    *,
    settings: Settings,
    kind: RecordKind,
    source: str,
    messages: Sequence[Message],
    engine: Any = None,
    session: IngestSession | None = None,
) -> IngestResult:
    """Store one batch of broker messages; poison messages are quarantined with a reason.

    ``session`` (an open ``IngestSession`` of ``kind`` and ``source``) keeps the key cache
    and connections across batches; without one, the call opens its own.
    """
    from voxloop.ingest.service import IngestSession

    batch, skipped = decode_messages(settings=settings, source=source, messages=messages)
    if session is not None:
        return store_messages(session=session, batch=batch, skipped=skipped)
    with IngestSession(settings=settings, kind=kind, source_file=source, engine=engine) as own:
        return store_messages(session=own, batch=batch, skipped=skipped)


class StageScheduler(Protocol):
    """What the consumer needs of the post-ingest stage runner.

    The caller passes one in (``voxloop.pipeline.service.StageRunner``), so ingestion does
    not import the stages that sit above it.
    """

    def request(self) -> None:
        """Ask for a run of the stages."""

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no run is pending; return False on timeout."""


class _Runner:
    """Shared loop state: stop flag, stage runner, progress line, stats file."""

    def __init__(
        self,
        *,
        settings: Settings,
        stats: ConsumeStats,
        stages: StageScheduler | None,
        progress: float,
    ) -> None:
        from voxloop.store.service import make_engine

        self.settings = settings
        self.stats = stats
        self.stop = threading.Event()
        self.stages = stages
        self.engine = make_engine(settings)
        self._session: IngestSession | None = None
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

    def session(self, kind: RecordKind) -> IngestSession:
        """Return the consumer's ingest session for ``kind`` (opened on first use)."""
        from voxloop.ingest.service import IngestSession

        if self._session is None or self._session.kind is not kind:
            if self._session is not None:
                self._session.close()
            # One session for the consumer's life: the dedup key cache and the registered
            # pseudonyms carry over, so a batch costs the same however many came before.
            self._session = IngestSession(
                settings=self.settings, kind=kind, source_file=self.stats.source, engine=self.engine
            )
        return self._session

    def store(self, kind: RecordKind, messages: Sequence[Message]) -> IngestResult:
        """Store one batch through the push path (the caller acknowledges afterwards)."""
        batch, skipped = self.decode(messages)
        return self.store_decoded(kind, batch, skipped)

    def decode(self, messages: Sequence[Message]) -> tuple[RawBatch, int]:
        """Parse one batch of messages (see ``decode_messages``)."""
        return decode_messages(settings=self.settings, source=self.stats.source, messages=messages)

    def store_decoded(self, kind: RecordKind, batch: RawBatch, skipped: int) -> IngestResult:
        """Store a decoded batch (the caller acknowledges afterwards)."""
        return store_messages(session=self.session(kind), batch=batch, skipped=skipped)

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
        if self._session is not None:
            self._session.close()
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
    stages: StageScheduler | None = None,
    idle_exit: float | None = None,
    progress: float = 5.0,
    stop: threading.Event | None = None,
    ack_wait: float = 60.0,
    max_ack_pending: int | None = None,
) -> ConsumeStats:
    """Consume a JetStream stream with a durable pull consumer until stopped; return counts.

    ``max_ack_pending`` applies when the durable consumer is created (default two batches,
    for one process); N processes sharing it need 2 × batch × N.
    """
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
                max_ack_pending=max_ack_pending,
            )
        )
    finally:
        runner.close()
    return stats


#: A partial batch is stored once no message arrived for this long (latency at low rates).
_LINGER_S = 0.05
#: Lifetime of one pull request; an expired one is renewed (it bounds the idle check too).
_PULL_EXPIRES_S = 1.0


def _js_position(reply: str) -> tuple[int, int, int]:
    """Return (stream sequence, deliveries, pending) from a JetStream ack subject."""
    tokens = reply.split(".")
    # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending> (9 tokens); the
    # newer form has a domain and an account hash in front (and a random token at the end).
    off = 0 if len(tokens) == 9 else 2
    return int(tokens[5 + off]), int(tokens[4 + off]), int(tokens[8 + off])


@dataclass
class _Pull:
    """The one open JetStream pull request: messages still due, time of the last arrival.

    Each request has its own reply subject (``<inbox>.<n>``), so a late status of an
    earlier request never ends the current one.
    """

    open: bool = False
    left: int = 0
    last: float = 0.0
    #: Number of the current request (its reply subject ends in it).
    n: int = 0
    #: When the current request counts as lost if no terminal status came (loop time).
    deadline: float = 0.0
    #: After a 409 (request refused: consumer deleted, limits, leader change) wait a little.
    retry_at: float = 0.0

    def close(self, now: float, *, retry_after: float = 0.0) -> None:
        """Take the current request as ended; the next may go out ``retry_after`` from now."""
        self.open = False
        self.retry_at = now + retry_after


#: Grace beyond a pull request's expiry before the consumer takes it as lost. The server
#: ends each request with a status (408 expired, 409 refused) or its last message; a lost
#: one (connection dropped, messages discarded by a slow client) would otherwise leave the
#: consumer waiting forever, and pending messages are only delivered (or redelivered) on a
#: pull request.
_PULL_GRACE_S = 2.0


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
    max_ack_pending: int | None = None,
) -> None:
    import nats
    import nats.errors
    from nats.js.api import AckPolicy, ConsumerConfig
    from nats.js.errors import NotFoundError

    pull = _Pull()
    wake = asyncio.Event()

    async def on_error(exc: Exception) -> None:
        # Slow-consumer drops and protocol errors: the current request may have lost
        # messages or its status, so stop waiting for it (the lost messages come back after
        # ack_wait on a later request).
        logger.warning("NATS: %s", exc)
        pull.close(asyncio.get_running_loop().time())
        wake.set()

    async def on_disconnect() -> None:
        # A pull request ends with its connection; a new one goes out after the reconnect.
        logger.warning("NATS: disconnected from %s", url)
        pull.close(asyncio.get_running_loop().time())
        wake.set()

    async def on_reconnect() -> None:
        logger.warning("NATS: reconnected to %s", url)
        pull.close(asyncio.get_running_loop().time())
        wake.set()

    nc = await nats.connect(
        url, error_cb=on_error, disconnected_cb=on_disconnect, reconnected_cb=on_reconnect
    )
    try:
        js = nc.jetstream()
        try:
            await js.stream_info(stream)
        except NotFoundError:
            await js.add_stream(name=stream, subjects=[subject])
        try:
            existing = await js.consumer_info(stream, durable)
        except NotFoundError:
            existing = None
        if existing is None:
            config = ConsumerConfig(
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                filter_subject=subject,
                # Long enough to store a full batch; a crashed consumer's batch comes back then.
                ack_wait=ack_wait,
                # Backpressure: the server hands out no more than two batches unacknowledged
                # (one being stored, the next one arriving meanwhile).
                max_ack_pending=max(max_ack_pending or 0, 2 * size),
            )
            await js.add_consumer(stream, config)
        else:
            limit = int(existing.config.max_ack_pending or 0)
            if 0 < limit < 2 * size:
                # Made by an earlier run with smaller batches: the server refuses pull
                # requests larger than its max_ack_pending, so the batches shrink to fit.
                logger.warning(
                    "consumer %s allows %d unacknowledged messages: batches of %d, not %d",
                    durable,
                    limit,
                    max(1, limit // 2),
                    size,
                )
                size = max(1, limit // 2)
        loop = asyncio.get_running_loop()
        buf: list[Any] = []
        inbox = nc.new_inbox()

        async def on_msg(msg: Any) -> None:
            # Messages of a pull request arrive on a private inbox; the callback only
            # collects them (nats-py's fetch() costs an asyncio task per message). Every
            # message is kept, whichever request it answers: it is unacknowledged until
            # stored. A message carries its stream subject, not the request's, so each one
            # counts against the current request; a status names its request, and only
            # the current request's status ends it.
            status = msg.headers.get("Status") if msg.headers else None
            if status is None:
                buf.append(msg)
                pull.left -= 1
                pull.open = pull.open and pull.left > 0
            elif status != "100" and msg.subject == f"{inbox}.{pull.n}":
                # 404 nothing pending, 408 expired, 409 refused or ended.
                pull.close(loop.time(), retry_after=0.5 if status == "409" else 0.0)
            pull.last = loop.time()
            wake.set()

        sub = await nc.subscribe(f"{inbox}.*", cb=on_msg)
        next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        # Two batches in hand at most (the consumer's max_ack_pending): one being stored in a
        # thread, the next parsed meanwhile (`ready`) or still arriving in `buf`.
        storing: tuple[asyncio.Future[IngestResult], list[Any]] | None = None
        ready: tuple[RawBatch, int, list[Any]] | None = None
        subscribed = True
        idle_since = time.monotonic()
        while True:
            wake.clear()
            stopping = runner.stop.is_set()
            if stopping and subscribed:
                # No new deliveries; what arrived is stored and acknowledged below, anything
                # still in flight is redelivered after ack_wait.
                await sub.unsubscribe()
                subscribed = False
            in_hand = (
                len(buf) + (len(storing[1]) if storing else 0) + (len(ready[2]) if ready else 0)
            )
            want = min(size - len(buf), 2 * size - in_hand)
            now = loop.time()
            if pull.open and now >= pull.deadline:
                # Also seen when the event loop was busy past the deadline with the status
                # already queued (it is ignored then): harmless, the server bounds what a
                # second request can add by max_ack_pending.
                logger.info("NATS: pull request %d got no end status; sending a new one", pull.n)
                pull.close(now)
            if subscribed and not pull.open and want > 0 and now >= pull.retry_at:
                request = {"batch": want, "expires": int(_PULL_EXPIRES_S * 1e9)}
                pull.n += 1
                pull.open, pull.left = True, want
                pull.deadline = now + _PULL_EXPIRES_S + _PULL_GRACE_S
                await nc.publish(
                    next_subject, json.dumps(request).encode(), reply=f"{inbox}.{pull.n}"
                )
            if storing is not None and storing[0].done():
                job, taken = storing
                storing = None
                result = job.result()
                # Count before acknowledging: a crash in between recounts the batch as
                # duplicates on redelivery, so counters never miss a message.
                runner.done(result, messages=len(taken), lag=_js_position(taken[-1].reply)[2])
                try:
                    for m in taken:
                        await m.ack()
                    await nc.flush()
                except (
                    nats.errors.FlushTimeoutError,
                    nats.errors.ConnectionReconnectingError,
                    nats.errors.OutboundBufferLimitError,
                ) as exc:
                    # The connection dropped or stalled with acknowledgements in flight:
                    # those not received come back after ack_wait, as duplicates of stored
                    # rows. Keep consuming; a closed connection still ends the loop.
                    logger.warning("NATS: acknowledgements of a batch may be lost: %r", exc)
                continue
            if storing is None and ready is not None:
                raw, skipped, taken = ready
                ready = None
                # The store (DuckDB, Arrow, Parquet: mostly outside the GIL) runs in a thread
                # while the next batch arrives and is parsed.
                job = loop.run_in_executor(None, runner.store_decoded, kind, raw, skipped)
                storing = (job, taken)
                idle_since = time.monotonic()
                continue
            quiet = loop.time() - pull.last >= _LINGER_S
            if ready is None and (
                len(buf) >= size or (buf and (stopping or not pull.open or quiet))
            ):
                taken = buf[:size]
                del buf[:size]
                batch = []
                for m in taken:
                    seq, delivered, _ = _js_position(m.reply)
                    batch.append(Message(row=seq, data=m.data, redelivered=delivered > 1))
                raw, skipped = runner.decode(batch)
                ready = (raw, skipped, taken)
                continue
            if storing is None and not buf:
                if stopping:
                    return
                if idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                    info = await js.consumer_info(stream, durable)
                    # Unacknowledged messages of a crashed predecessor come back after
                    # ack_wait: idle means nothing pending and nothing awaiting redelivery.
                    if not info.num_pending and not info.num_ack_pending:
                        return
                    idle_since = time.monotonic() - idle_exit + _PULL_EXPIRES_S
            waiter = asyncio.ensure_future(wake.wait())
            pending: list[asyncio.Future[Any]] = [waiter]
            if storing is not None:
                pending.append(storing[0])
            await asyncio.wait(
                pending, timeout=_LINGER_S if buf else 0.5, return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
    finally:
        await nc.close()  # acks were flushed after each batch


#: Seconds a Kafka consumer may wait for its first partitions before idle time counts.
_JOIN_GRACE_S = 60.0


def consume_kafka(
    *,
    settings: Settings,
    bootstrap: str,
    topic: str,
    group: str = "voxloop",
    kind: RecordKind = RecordKind.voice,
    batch_size: int | None = None,
    stages: StageScheduler | None = None,
    idle_exit: float | None = None,
    progress: float = 5.0,
    stop: threading.Event | None = None,
    options: dict[str, str | int | float | bool] | None = None,
) -> ConsumeStats:
    """Consume a Kafka topic in a consumer group, committing after each stored batch.

    ``options`` are more librdkafka settings (``session.timeout.ms``, security, ...).
    """
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
            **(options or {}),
        }
    )
    consumer.subscribe([topic])
    started = idle_since = time.monotonic()
    try:
        while not runner.stop.is_set():
            # consume() returns at most `size` messages: the batch bound is the backpressure.
            msgs = list(consumer.consume(num_messages=size, timeout=1.0))
            errors = [m.error() for m in msgs if m.error() is not None]
            if errors:
                raise KafkaException(errors[0])
            msgs = [m for m in msgs if m.error() is None]
            if not msgs:
                now = time.monotonic()
                if not consumer.assignment() and now - started < _JOIN_GRACE_S:
                    # Joining the group takes a rebalance (seconds): not idle yet.
                    idle_since = now
                if idle_exit is not None and now - idle_since >= idle_exit:
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
