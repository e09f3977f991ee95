"""Ingest files and pushed records into the lake, losing nothing.

Every input row ends up exactly once as *stored* (a row of the kind's lake table),
*quarantined* (a row of the ``quarantine`` lake table, with field and reason) or
*duplicate* (an earlier row of the same batch, or a stored row, has the same ``id`` or the
same content hash).  The pipeline per batch is: read text columns → apply the mapping →
type and check in one DuckDB query (``normalize``) → mask PII → under the table's writer
lock: anti-join the 128-bit keys of stored rows, register customer identities, write one
lake part and its keys part.  See ``docs/data-model.md``.

The stored keys are cached for the whole run (``_KeyCache``): under the lock only the keys
parts written since the previous batch, by any process, are read, so a batch costs the
same whatever the lake size up to the cache's row budget (2^20 rows); beyond it each batch
streams the stored keys from disk past the batch.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import queue
import threading
import uuid
import zoneinfo
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from voxloop.config import Settings
from voxloop.errors import NotFoundError, PermissionDeniedError, UnusableInputError
from voxloop.ingest.mapping import ROW_INDEX, Mapping, apply_mapping, load_mapping
from voxloop.ingest.models import CustomerIdentity, IdentityAccessLog
from voxloop.ingest.normalize import FIELD_SPECS, normalize
from voxloop.ingest.readers import (
    RawBatch,
    file_format,
    read_csv,
    read_jsonl,
    read_parquet,
    read_records,
    read_xlsx,
)
from voxloop.ingest.schemas import (
    KEYS_SCHEMA,
    LAKE_TABLES,
    QUARANTINE_SCHEMA,
    TS,
    IngestResult,
    RecordKind,
)
from voxloop.store.service import (
    make_engine,
    make_sessionmaker,
    migrate,
    part_files,
    table_dir,
    write_part,
    writer_lock,
)

QUARANTINE_TABLE = "quarantine"

#: Lake columns that are (nearly) unique per row: a dictionary would be built only to be
#: abandoned for plain encoding, so skipping it saves CPU and a little space.
_PLAIN_COLUMNS = frozenset(
    {
        "id",
        "customer_id",
        "text",
        "comment",
        "content_hash",
        "source_row",
        "received_at",
        "occurred_at",
    }
)

#: File-name stems that name a record kind when ``--kind`` is not given.
KIND_BY_STEM = {
    "voices": RecordKind.voice,
    "voice": RecordKind.voice,
    "surveys": RecordKind.survey,
    "survey": RecordKind.survey,
    "customers": RecordKind.customer,
    "customer": RecordKind.customer,
    "events": RecordKind.event,
    "event": RecordKind.event,
}

_migrated: set[str] = set()

#: Pseudonyms one run remembers as registered before it starts over (memory bound).
_KNOWN_IDS_CAP = 1_000_000


# ---------------------------------------------------------------------------
# Pseudonymisation and identities


def pseudonymise(*, key: str, ids: pa.Array) -> pa.Array:
    """Return ``"c" + sha256(f"{key}|{id}")[:24]`` for each id (nulls stay null)."""
    con = duckdb.connect()
    try:
        con.register("ids", pa.table({"i": pc.cast(ids, pa.string())}))
        out = con.sql(
            "SELECT CASE WHEN i IS NULL THEN NULL "
            "ELSE 'c' || left(sha256($key || '|' || i), 24) END AS p FROM ids",
            params={"key": key},
        ).to_arrow_table()
    finally:
        con.close()
    return out.column("p").combine_chunks()


def _ensure_store(settings: Settings) -> None:
    url = settings.resolved_database_url
    if url not in _migrated:
        migrate(settings)
        _migrated.add(url)


def _register_identities(
    engine: Engine, pseudonyms: pa.Array, raw: pa.Array, known: list[pa.Array]
) -> None:
    """Insert (pseudonym, real id) pairs not registered yet; ``known`` caches this run's."""
    keep = pc.is_valid(pseudonyms)
    if known:
        seen = pa.concat_arrays(known) if len(known) > 1 else known[0]
        keep = pc.and_(keep, pc.invert(pc.is_in(pseudonyms, value_set=seen)))
    pairs = pa.table({"p": pseudonyms, "r": raw}).filter(keep)
    if pairs.num_rows == 0:
        return
    pairs = pairs.group_by("p").aggregate([("r", "min")]).sort_by("p")
    cached = sum(len(a) for a in known)
    if cached > _KNOWN_IDS_CAP:
        known.clear()  # bounded memory; re-inserting a known id is a no-op anyway
    known[:] = [pa.concat_arrays([*known, pairs.column("p").combine_chunks()])]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if engine.dialect.name == "postgresql":
        now += "+00"
    rows = list(
        zip(
            pairs.column("p").to_pylist(),
            pairs.column("r_min").to_pylist(),
            [now] * pairs.num_rows,
            strict=True,
        )
    )
    # Plain driver executemany: the ORM's per-row bookkeeping costs more than the insert.
    if engine.dialect.name == "postgresql":
        sql = (
            "INSERT INTO customer_identities (pseudonym, customer_id, first_seen_at) "
            "VALUES (%s, %s, %s::timestamptz) ON CONFLICT (pseudonym) DO NOTHING"
        )
    else:
        sql = (
            "INSERT OR IGNORE INTO customer_identities (pseudonym, customer_id, first_seen_at) "
            "VALUES (?, ?, ?)"
        )
    with engine.begin() as conn:
        conn.exec_driver_sql(sql, rows)


def resolve_contact(
    *,
    settings: Settings,
    pseudonym: str,
    actor: str,
    purpose: str,
    session: Session | None = None,
) -> str:
    """Return the real customer id of ``pseudonym`` and log who asked and why.

    Every call with an actor and a purpose appends one row to ``identity_access_log``,
    found or not; without both the call is refused.
    """
    if not actor or not actor.strip() or not purpose or not purpose.strip():
        raise PermissionDeniedError(
            "resolving a customer identity needs an actor and a purpose (both are logged)"
        )
    if session is None:
        _ensure_store(settings)
        engine = make_engine(settings)
        try:
            with make_sessionmaker(engine)() as own:
                return resolve_contact(
                    settings=settings,
                    pseudonym=pseudonym,
                    actor=actor,
                    purpose=purpose,
                    session=own,
                )
        finally:
            engine.dispose()
    found = session.get(CustomerIdentity, pseudonym)
    session.add(
        IdentityAccessLog(
            pseudonym=pseudonym,
            actor=actor.strip(),
            purpose=purpose.strip(),
            found=found is not None,
            accessed_at=dt.datetime.now(dt.UTC),
        )
    )
    session.commit()
    if found is None:
        raise NotFoundError(f"no customer with pseudonym {pseudonym!r}")
    return found.customer_id


def access_log(*, settings: Settings, pseudonym: str | None = None) -> list[dict[str, Any]]:
    """Return the identity access log (newest first), optionally for one pseudonym."""
    _ensure_store(settings)
    engine = make_engine(settings)
    try:
        with make_sessionmaker(engine)() as session:
            stmt = select(IdentityAccessLog).order_by(IdentityAccessLog.id.desc())
            if pseudonym is not None:
                stmt = stmt.where(IdentityAccessLog.pseudonym == pseudonym)
            return [
                {
                    "pseudonym": r.pseudonym,
                    "actor": r.actor,
                    "purpose": r.purpose,
                    "found": r.found,
                    "accessed_at": r.accessed_at.isoformat(),
                }
                for r in session.scalars(stmt)
            ]
    finally:
        engine.dispose()


def count_identities(*, settings: Settings) -> int:
    """Return how many customer identities the operational store holds."""
    _ensure_store(settings)
    engine = make_engine(settings)
    try:
        with make_sessionmaker(engine)() as session:
            return int(session.scalar(select(func.count()).select_from(CustomerIdentity)) or 0)
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------
# Dedup keys: one keys part (128-bit hashes of id and content hash) per lake part, with
# the same file name, under ``home/keys/<table>/``.


def _keys_dir(settings: Settings, table: str) -> Path:
    return settings.home / "keys" / table


def _sync_keys(settings: Settings, table: str) -> None:
    """Make the keys parts match the lake parts (repairs a crash between the two writes)."""
    kdir = _keys_dir(settings, table)
    kdir.mkdir(parents=True, exist_ok=True)
    data = {p.name: p for p in part_files(settings, table)}
    keys = {p.name: p for p in kdir.glob("part-*.parquet")}
    for name in keys.keys() - data.keys():
        keys[name].unlink()
    missing = data.keys() - keys.keys()
    if not missing:
        return
    con = duckdb.connect()
    try:
        for name in sorted(missing):
            part = pq.read_table(data[name], columns=["id", "content_hash"])
            con.register("p", part)
            rebuilt = con.sql(
                "SELECT (md5_number(id) >> 64)::UBIGINT AS id_hi, "
                "(md5_number(id) & 18446744073709551615::UHUGEINT)::UBIGINT AS id_lo, "
                "('0x' || left(content_hash, 16))::UBIGINT AS ch_hi, "
                "('0x' || right(content_hash, 16))::UBIGINT AS ch_lo FROM p"
            ).to_arrow_table()
            con.unregister("p")
            _write_keys(kdir / name, rebuilt.cast(KEYS_SCHEMA))
    finally:
        con.close()


def _write_keys(path: Path, keys: pa.Table) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    # Random 64-bit hashes do not compress; skip the codec.
    pq.write_table(keys, tmp, compression="none")
    os.replace(tmp, path)


#: Stored rows whose keys one run keeps in memory (32 bytes each, so 32 MiB); beyond it the
#: run scans the keys parts on disk instead (bounded memory on big lakes).
_KEY_CACHE_ROWS = 1 << 20


def _batch_duplicates(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Flag every row whose (hi, lo) key equals that of an earlier row of the batch.

    A sort by ``hi`` alone settles the usual case; the full (hi, lo) sort runs only when
    two rows share a high half, which random 64-bit halves make rare outside duplicates.
    """
    dup = np.zeros(len(hi), dtype=bool)
    if len(hi) < 2:
        return dup
    hs = np.sort(hi)
    if not bool(np.any(hs[1:] == hs[:-1])):
        return dup
    order = np.lexsort((lo, hi))  # stable: equal keys stay in row order
    hs, ls = hi[order], lo[order]
    same = (hs[1:] == hs[:-1]) & (ls[1:] == ls[:-1])
    dup[order[1:][same]] = True
    return dup


class _KeyCache:
    """The dedup keys of one lake table, cached across the batches of one ingest run.

    The keys live in a table of the run's in-memory DuckDB connection (fixed-size blocks:
    no reallocation as it grows).  Only valid while the table's writer lock is held:
    ``refresh`` loads the keys parts written since the last call (by this or another
    process), so the cache always equals the keys parts on disk.  A keys part that
    vanished (crash repair, erasure) resets the cache.  Once the stored keys outgrow
    ``_KEY_CACHE_ROWS`` the cache is dropped for the rest of the run and every keys part is
    scanned from disk, so memory stays bounded on big lakes, where a partial cache would
    save only a small share of the scan.
    """

    def __init__(self, settings: Settings, table: str, con: Any) -> None:
        self.settings = settings
        self.table = table
        self.con = con
        self.full = False
        self.reset()

    def reset(self) -> None:
        """Forget every cached key."""
        if self.full:
            self.con.execute("DROP TABLE IF EXISTS cached_keys")
        else:
            self.con.execute(
                "CREATE OR REPLACE TEMP TABLE cached_keys "
                "(id_hi UBIGINT, id_lo UBIGINT, ch_hi UBIGINT, ch_lo UBIGINT)"
            )
        self.parts: set[str] = set()
        self.rows = 0
        self.uncached: list[Path] = []

    def refresh(self) -> None:
        """Bring the cache up to date with the keys parts on disk (call under the lock)."""
        _sync_keys(self.settings, self.table)
        on_disk = {p.name: p for p in _keys_dir(self.settings, self.table).glob("part-*.parquet")}
        if not self.parts <= on_disk.keys():
            self.reset()
        for name in sorted(on_disk.keys() - self.parts):
            if not self.full:
                self.add(name, pq.read_table(on_disk[name]))
        self.uncached = sorted(on_disk.values()) if self.full else []

    def add(self, name: str, keys: pa.Table) -> None:
        """Record the keys of a part just written (drops the cache when over budget)."""
        if self.full:
            return
        if self.rows + keys.num_rows > _KEY_CACHE_ROWS:
            self.full = True
            self.reset()
            return
        self.con.register("new_keys", keys)
        try:
            self.con.execute(
                "INSERT INTO cached_keys SELECT id_hi, id_lo, ch_hi, ch_lo FROM new_keys"
            )
        finally:
            self.con.unregister("new_keys")
        self.parts.add(name)
        self.rows += keys.num_rows

    def duplicates(self, keys: pa.Table) -> np.ndarray:
        """Flag rows whose id or content key repeats an earlier row of the batch or the store."""
        id_hi, id_lo = _u64(keys, "id_hi"), _u64(keys, "id_lo")
        ch_hi, ch_lo = _u64(keys, "ch_hi"), _u64(keys, "ch_lo")
        dup: np.ndarray = _batch_duplicates(id_hi, id_lo) | _batch_duplicates(ch_hi, ch_lo)
        sources = ["cached_keys"] if self.rows else []
        if self.uncached:
            files = ", ".join("'" + str(f).replace("'", "''") + "'" for f in self.uncached)
            sources.append(f"read_parquet([{files}])")
        for src in sources:
            dup[_stored_hits(self.con, src, keys)] = True
        return dup


def _u64(table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name)
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    out: np.ndarray = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.uint64)
    return out


def _stored_hits(con: Any, src: str, keys: pa.Table) -> np.ndarray:
    """Return the batch row numbers whose id or content key occurs in the relation ``src``."""
    # Inner joins with the batch as the (small) build side: the stored keys stream past
    # it, so memory stays bounded by the batch, not by the lake.
    sql = (
        f"SELECT DISTINCT b.i FROM {src} k JOIN b ON k.id_hi = b.id_hi AND k.id_lo = b.id_lo"
        f" UNION SELECT DISTINCT b.i FROM {src} k JOIN b ON k.ch_hi = b.ch_hi"
        " AND k.ch_lo = b.ch_lo"
    )
    con.register("b", keys)
    try:
        out: np.ndarray = con.sql(sql).to_arrow_table().column("i").to_numpy()
    finally:
        con.unregister("b")
    return out


# ---------------------------------------------------------------------------
# Quarantine


def _mask_json(raw: list[str]) -> list[str]:
    from voxloop.ingest.pii import mask_array

    masked, _ = mask_array(pa.array(raw, pa.string()))
    return [str(v) for v in masked.to_pylist()]


def _write_quarantine(
    settings: Settings,
    *,
    kind: RecordKind,
    source_file: str,
    batch_id: str,
    rows: list[int],
    fields: list[str | None],
    reasons: list[str],
    raws: list[str],
) -> None:
    if not rows:
        return
    now = dt.datetime.now(dt.UTC)
    n = len(rows)
    data = pa.table(
        {
            "kind": pa.array([kind.value] * n, pa.string()),
            "source_file": pa.array([source_file] * n, pa.string()),
            "source_row": pa.array(rows, pa.int64()),
            "field": pa.array(fields, pa.string()),
            "reason": pa.array(reasons, pa.string()),
            "raw": pa.array(_mask_json(raws), pa.string()),
            "batch_id": pa.array([batch_id] * n, pa.string()),
            "quarantined_at": pa.array([now] * n, TS),
        },
        schema=QUARANTINE_SCHEMA,
    )
    with writer_lock(settings, QUARANTINE_TABLE):
        write_part(settings, QUARANTINE_TABLE, data)


def _raw_json(table: pa.Table, idx: np.ndarray, replace: dict[str, str]) -> list[str]:
    """Serialise source rows (for quarantine), with real customer ids pseudonymised."""
    if table.num_columns == 0:  # records with no fields at all: nothing to keep but "{}"
        return ["{}"] * len(idx)
    out = []
    for rec in table.take(pa.array(idx, pa.int64())).to_pylist():
        text = json.dumps(rec, ensure_ascii=False)
        for real, pseudo in replace.items():
            if real and real in text:
                text = text.replace(json.dumps(real, ensure_ascii=False), json.dumps(pseudo))
        out.append(text)
    return out


# ---------------------------------------------------------------------------
# The ingest pipeline


def _lake_table(
    good: pa.Table,
    kind: RecordKind,
    *,
    rows: np.ndarray,
    batch_id: str,
    source_file: str,
    now: dt.datetime,
) -> pa.Table:
    from voxloop.ingest.pii import mask_array

    _, schema = LAKE_TABLES[kind]
    n = good.num_rows
    cols: dict[str, Any] = {}
    for name in schema.names:
        if name in good.column_names:
            cols[name] = good.column(name)
    if kind is RecordKind.voice:
        masked, counts = mask_array(good.column("text"))
        cols["text"], cols["pii_counts"] = masked, counts
    elif kind is RecordKind.survey:
        cols["comment"], _ = mask_array(good.column("comment"))
    cols["content_hash"] = good.column("__content_hash")
    cols["ingested_at"] = pa.array(np.full(n, np.datetime64(now.replace(tzinfo=None), "us")), TS)
    cols["batch_id"] = pa.nulls(n, pa.string()).fill_null(batch_id)
    cols["source_file"] = pa.nulls(n, pa.string()).fill_null(source_file)
    cols["source_row"] = pa.array(rows[good.column(ROW_INDEX).to_numpy()], pa.int64())
    arrays = [pc.cast(cols[f.name], f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


class IngestSession:
    """An ingest run of one kind and source, kept open across calls.

    It holds what a run caches: the DuckDB connection, the dedup key cache and the
    pseudonyms registered so far.  ``ingest_batches`` opens one per call; a broker consumer
    keeps one for its lifetime and stores each fetched batch with ``store``, so a batch
    costs the same however many came before it (the key cache loads only the keys parts
    written since the previous batch, by any process).
    """

    def __init__(
        self,
        *,
        settings: Settings,
        kind: RecordKind,
        source_file: str,
        mapping: Mapping | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.settings = settings
        self.kind = kind
        self.source_file = source_file
        self.mapping = mapping
        self.table_name = LAKE_TABLES[kind][0]
        self.timezone = (mapping.timezone if mapping else None) or settings.timezone
        self.formats = {
            k: [v] if isinstance(v, str) else list(v)
            for k, v in (mapping.formats if mapping else {}).items()
        }
        self.pseudo_fields = [s.name for s in FIELD_SPECS[kind] if s.pseudonymise]
        _ensure_store(settings)
        self._own_engine = engine is None
        self.engine = make_engine(settings) if engine is None else engine
        self.con = duckdb.connect()
        self.known_ids: list[pa.Array] = []
        self.cache = _KeyCache(settings, self.table_name, self.con)

    def prepare(self, batch: RawBatch, *, batch_id: str, con: Any = None) -> _Prepared:
        """Type, check and mask one batch (``con``: a cursor, for another thread)."""
        return _prepare_batch(
            settings=self.settings,
            kind=self.kind,
            batch=batch,
            mapping=self.mapping,
            source_file=self.source_file,
            batch_id=batch_id,
            timezone=self.timezone,
            formats=self.formats,
            pseudo_fields=self.pseudo_fields,
            con=self.con if con is None else con,
        )

    def commit(self, prep: _Prepared, *, batch_id: str) -> IngestResult:
        """Deduplicate and write one prepared batch (and its quarantine rows)."""
        return _commit_batch(
            settings=self.settings,
            kind=self.kind,
            prep=prep,
            source_file=self.source_file,
            batch_id=batch_id,
            table_name=self.table_name,
            pseudo_fields=self.pseudo_fields,
            engine=self.engine,
            known_ids=self.known_ids,
            cache=self.cache,
        )

    def store(self, batch: RawBatch, *, batch_id: str | None = None) -> IngestResult:
        """Store one raw batch as its own lineage batch; return its counts."""
        bid = batch_id or uuid.uuid4().hex
        result = self.commit(self.prepare(batch, batch_id=bid), batch_id=bid)
        return IngestResult(batch_id=bid).add(result)

    def close(self) -> None:
        """Release the connection (and the engine when the session made it)."""
        self.con.close()
        if self._own_engine:
            self.engine.dispose()

    def __enter__(self) -> IngestSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ingest_batches(
    *,
    settings: Settings,
    kind: RecordKind,
    batches: Iterator[RawBatch],
    mapping: Mapping | None,
    source_file: str,
    engine: Engine | None = None,
) -> IngestResult:
    """Store raw batches of one kind (files, pushes and broker consumers share this path)."""
    batch_id = uuid.uuid4().hex
    result = IngestResult(batch_id=batch_id)
    with IngestSession(
        settings=settings, kind=kind, source_file=source_file, mapping=mapping, engine=engine
    ) as session:

        def prepare(batch: RawBatch, pcon: Any) -> _Prepared:
            return session.prepare(batch, batch_id=batch_id, con=pcon)

        for prep in _in_background(prepare, batches, session.con):
            result = result.add(session.commit(prep, batch_id=batch_id))
    return result


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """List the Parquet column paths of ``schema`` worth dictionary-encoding."""
    paths: list[str] = []
    for field in schema:
        if field.name in _PLAIN_COLUMNS:
            continue
        if pa.types.is_map(field.type):
            # Parquet names a map's leaves <name>.key_value.{key,value}.
            paths += [f"{field.name}.key_value.key", f"{field.name}.key_value.value"]
        else:
            paths.append(field.name)
    return paths


_DONE = object()


def _in_background(
    prepare: Callable[[RawBatch, Any], _Prepared], batches: Iterator[RawBatch], con: Any
) -> Iterator[_Prepared]:
    """Yield ``prepare(batch)`` for each batch, optionally preparing the next in a thread.

    Reading, typing and masking of batch k+1 (DuckDB, Arrow and regex work) overlap the
    dedup and writes of batch k; at most two prepared batches are held at once.
    """
    # Opt-in (VOXLOOP_INGEST_PIPELINE=1): the second thread and batch cost about 60 MB of
    # peak RSS, which the 500 MB budget for a 2 GB file cannot spare (docs/bench/ingest.md).
    if os.environ.get("VOXLOOP_INGEST_PIPELINE", "0") != "1":
        pcon = con.cursor()
        try:
            for batch in batches:
                yield prepare(batch, pcon)
        finally:
            pcon.close()
        return
    slot: queue.Queue[Any] = queue.Queue()
    # One permit per batch between "start preparing" and "committed": the producer works on
    # batch k+1 while batch k is committed, and never runs further ahead (bounded memory).
    room = threading.Semaphore(2)
    stop = threading.Event()

    def work() -> None:
        pcon = con.cursor()
        try:
            while not stop.is_set():
                if not room.acquire(timeout=0.05):
                    continue
                batch = next(batches, None)
                if batch is None:
                    slot.put(_DONE)
                    return
                slot.put(prepare(batch, pcon))
        except BaseException as exc:  # re-raised in the consuming thread
            slot.put(exc)
        finally:
            pcon.close()

    thread = threading.Thread(target=work, name="voxloop-ingest-prepare", daemon=True)
    thread.start()
    try:
        while True:
            item = slot.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
            del item
            pa.default_memory_pool().release_unused()
            room.release()
    finally:
        stop.set()
        thread.join()


@dataclass
class _Prepared:
    """One batch typed, checked and masked, waiting for dedup and the writes."""

    read: int
    q_rows: list[int]
    q_fields: list[str | None]
    q_reasons: list[str]
    q_raws: list[str]
    lake: pa.Table | None = None
    keys: pa.Table | None = None
    ids: pa.Table | None = None


def _prepare_batch(
    *,
    settings: Settings,
    kind: RecordKind,
    batch: RawBatch,
    mapping: Mapping | None,
    source_file: str,
    batch_id: str,
    timezone: str,
    formats: dict[str, list[str]],
    pseudo_fields: list[str],
    con: Any,
) -> _Prepared:
    prep = _Prepared(
        read=batch.read,
        q_rows=[r.row for r in batch.rejects],
        q_fields=[r.field for r in batch.rejects],
        q_reasons=[r.reason for r in batch.rejects],
        q_raws=[r.raw for r in batch.rejects],
    )
    if not len(batch.rows):
        return prep
    canon = apply_mapping(batch.table, mapping, kind, num_rows=len(batch.rows))
    typed = normalize(
        con,
        canon,
        kind,
        secret_key=settings.secret_key,
        timezone=timezone,
        formats=formats,
        hash_id=True if mapping is not None and mapping.dedup == "id" else None,
    )
    del canon
    is_bad = pc.is_valid(typed.column("__reason"))
    if pc.any(is_bad).as_py():
        bad = typed.filter(is_bad)
        good = typed.filter(pc.invert(is_bad))
    else:  # the common case: no copy
        bad, good = typed.slice(0, 0), typed
    del typed
    order = good.column(ROW_INDEX).to_numpy()
    if len(order) > 1 and not bool(np.all(order[1:] > order[:-1])):
        # Source order decides which of two equal rows in a batch is the duplicate.
        good = good.sort_by(ROW_INDEX)
    if bad.num_rows:
        idx = bad.column(ROW_INDEX).to_numpy()
        replace: dict[str, str] = {}
        for f in pseudo_fields:
            for real, pseudo in zip(
                bad.column("__raw_" + f).to_pylist(), bad.column(f).to_pylist(), strict=True
            ):
                if real is not None and pseudo is not None:
                    replace[real] = pseudo
        prep.q_rows.extend(batch.rows[idx].tolist())
        prep.q_fields.extend(bad.column("__field").to_pylist())
        prep.q_reasons.extend(bad.column("__reason").to_pylist())
        prep.q_raws.extend(_raw_json(batch.table, idx, replace))
    if good.num_rows:
        now = dt.datetime.now(dt.UTC)
        prep.lake = _lake_table(
            good, kind, rows=batch.rows, batch_id=batch_id, source_file=source_file, now=now
        )
        prep.keys = pa.table(
            {
                "i": pa.array(np.arange(good.num_rows, dtype=np.int64)),
                "id_hi": good.column("__id_hi"),
                "id_lo": good.column("__id_lo"),
                "ch_hi": good.column("__ch_hi"),
                "ch_lo": good.column("__ch_lo"),
            }
        )
        prep.ids = good.select(pseudo_fields + ["__raw_" + f for f in pseudo_fields])
    return prep


def _commit_batch(
    *,
    settings: Settings,
    kind: RecordKind,
    prep: _Prepared,
    source_file: str,
    batch_id: str,
    table_name: str,
    pseudo_fields: list[str],
    engine: Engine,
    known_ids: list[pa.Array],
    cache: _KeyCache,
) -> IngestResult:
    stored = duplicates = 0
    if prep.lake is not None and prep.keys is not None and prep.ids is not None:
        keys, lake, ids = prep.keys, prep.lake, prep.ids
        prep.lake = prep.keys = prep.ids = None
        with writer_lock(settings, table_name):
            cache.refresh()
            dup = cache.duplicates(keys)
            if dup.any():
                keep = pa.array(~dup)
                new, new_ids, new_keys = lake.filter(keep), ids.filter(keep), keys.filter(keep)
            else:
                new, new_ids, new_keys = lake, ids, keys
            del lake, ids, keys
            for f in pseudo_fields:
                _register_identities(
                    engine,
                    new_ids.column(f).combine_chunks(),
                    new_ids.column("__raw_" + f).combine_chunks(),
                    known_ids,
                )
            part = write_part(
                settings, table_name, new, use_dictionary=_dictionary_columns(new.schema)
            )
            if part is not None:
                new_keys = new_keys.drop_columns(["i"]).cast(KEYS_SCHEMA)
                _write_keys(_keys_dir(settings, table_name) / part.name, new_keys)
                cache.add(part.name, new_keys)
        stored = new.num_rows
        duplicates = int(dup.sum())
    _write_quarantine(
        settings,
        kind=kind,
        source_file=source_file,
        batch_id=batch_id,
        rows=prep.q_rows,
        fields=prep.q_fields,
        reasons=prep.q_reasons,
        raws=prep.q_raws,
    )
    return IngestResult(
        read=prep.read, stored=stored, quarantined=len(prep.q_rows), duplicates=duplicates
    )


def infer_kind(path: Path) -> RecordKind | None:
    """Guess the record kind from a file name such as ``voices.jsonl`` or ``customers.csv``."""
    stem = path.name.lower().split(".", 1)[0]
    for prefix, kind in KIND_BY_STEM.items():
        if stem == prefix or stem.startswith(prefix + "_") or stem.startswith(prefix + "-"):
            return kind
    return None


def _resolve_mapping(mapping: Mapping | Path | str | None) -> Mapping | None:
    if mapping is None or isinstance(mapping, Mapping):
        return mapping
    return load_mapping(Path(mapping))


def ingest_file(
    *,
    settings: Settings,
    path: Path | str,
    kind: RecordKind | str | None = None,
    mapping: Mapping | Path | str | None = None,
    engine: Engine | None = None,
) -> IngestResult:
    """Ingest one CSV/JSONL/Parquet/XLSX file in batches of ``settings.batch_size`` rows."""
    path = Path(path)
    if not path.is_file():
        raise UnusableInputError(f"{path}: no such file")
    m = _resolve_mapping(mapping)
    k = RecordKind(kind) if kind else (m.kind if m and m.kind else infer_kind(path))
    if k is None:
        raise UnusableInputError(
            f"{path}: cannot tell the record kind from the file name; give --kind "
            "(voice, survey, customer or event)"
        )
    fmt = file_format(path)
    size = settings.batch_size
    batches: Iterator[RawBatch]
    if fmt == "csv":
        batches = read_csv(
            path,
            batch_size=size,
            encoding=m.encoding if m else None,
            delimiter=m.delimiter if m else None,
        )
    elif fmt == "jsonl":
        batches = read_jsonl(path, batch_size=size, encoding=m.encoding if m else None)
    elif fmt == "parquet":
        batches = read_parquet(path, batch_size=size)
    else:
        batches = read_xlsx(path, batch_size=size, sheet=m.sheet if m else None)
    return ingest_batches(
        settings=settings,
        kind=k,
        batches=batches,
        mapping=m,
        source_file=str(path),
        engine=engine,
    )


def ingest_path(
    *,
    settings: Settings,
    path: Path | str,
    kind: RecordKind | str | None = None,
    mapping: Mapping | Path | str | None = None,
) -> IngestResult:
    """Ingest a file, or every supported file of a folder (kind from each file name)."""
    path = Path(path)
    if not path.is_dir():
        return ingest_file(settings=settings, path=path, kind=kind, mapping=mapping)
    order = {RecordKind.customer: 0, RecordKind.voice: 1, RecordKind.survey: 2, RecordKind.event: 3}
    files = []
    for child in sorted(path.iterdir()):
        if not child.is_file():
            continue
        try:
            file_format(child)
        except UnusableInputError:
            continue
        k = RecordKind(kind) if kind else infer_kind(child)
        if k is not None:
            files.append((order[k], child, k))
    if not files:
        raise UnusableInputError(
            f"{path}: no voices/surveys/customers/events file (csv, jsonl, parquet, xlsx) found"
        )
    total = IngestResult()
    for _, child, k in sorted(files, key=lambda t: (t[0], t[1].name)):
        total = total.add(ingest_file(settings=settings, path=child, kind=k, mapping=mapping))
    return total


def ingest_records(
    *,
    settings: Settings,
    kind: RecordKind | str,
    records: Iterable[Any],
    engine: Engine | None = None,
    source: str = "http",
) -> IngestResult:
    """Ingest pushed records (canonical flat fields; ``region``/``plan`` objects allowed)."""
    k = RecordKind(kind)
    return ingest_batches(
        settings=settings,
        kind=k,
        batches=read_records(records, batch_size=settings.batch_size),
        mapping=None,
        source_file=source,
        engine=engine,
    )


# ---------------------------------------------------------------------------
# Reading back


def _lake_con(settings: Settings, table: str) -> Any:
    from voxloop.store.service import lake_connection

    if not part_files(settings, table):
        return None
    return lake_connection(settings, (table,))


def list_quarantine(
    *, settings: Settings, limit: int = 100, offset: int = 0, batch_id: str | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """Return (total, rows) of quarantined records, newest first."""
    con = _lake_con(settings, QUARANTINE_TABLE)
    if con is None:
        return 0, []
    where, params = ("WHERE batch_id = $b", {"b": batch_id}) if batch_id else ("", {})
    total_row = con.execute(f"SELECT count(*) FROM quarantine {where}", params).fetchone()
    rows = con.execute(
        "SELECT kind, source_file, source_row, field, reason, raw, batch_id, "
        f"strftime(quarantined_at, '%Y-%m-%dT%H:%M:%SZ') FROM quarantine {where} "
        f"ORDER BY quarantined_at DESC, source_file, source_row LIMIT {int(limit)} "
        f"OFFSET {int(offset)}",
        params,
    ).fetchall()
    con.close()
    keys = (
        "kind",
        "source_file",
        "source_row",
        "field",
        "reason",
        "raw",
        "batch_id",
        "quarantined_at",
    )
    return int(total_row[0]) if total_row else 0, [dict(zip(keys, r, strict=True)) for r in rows]


def query_voices(
    *,
    settings: Settings,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    province: str | None = None,
    city: str | None = None,
    district: str | None = None,
    channel: str | None = None,
    kind: str | None = None,
    q: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[int, list[dict[str, Any]]]:
    """Return (total, page) of stored voices matching the filters, newest first."""
    con = _lake_con(settings, "voices")
    if con is None:
        return 0, []
    clauses: list[str] = []
    params: dict[str, Any] = {}
    for name, value in (
        ("province", province),
        ("city", city),
        ("district", district),
        ("channel", channel),
        ("kind", kind),
    ):
        if value:
            clauses.append(f"{name} = ${name}")
            params[name] = value
    for name, op, moment in (("start", ">=", start), ("end", "<", end)):
        if moment is not None:
            if moment.tzinfo is None:
                # Naive times are local, as everywhere in voxloop.
                moment = moment.replace(tzinfo=zoneinfo.ZoneInfo(settings.timezone))
            clauses.append(f"received_at {op} ${name}::TIMESTAMPTZ")
            params[name] = moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
    if q:
        clauses.append("contains(lower(text), lower($q))")
        params["q"] = q
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    total_row = con.execute(f"SELECT count(*) FROM voices {where}", params).fetchone()
    cur = con.execute(
        "SELECT id, source, kind, strftime(received_at, '%Y-%m-%dT%H:%M:%S.%fZ') AS received_at, "
        "strftime(occurred_at, '%Y-%m-%dT%H:%M:%S.%fZ') AS occurred_at, customer_id, province, "
        "city, district, channel, language, text, attributes, pii_counts "
        f"FROM voices {where} ORDER BY voices.received_at DESC, id "
        f"LIMIT {int(limit)} OFFSET {int(offset)}",
        params,
    )
    names = [d[0] for d in cur.description]
    items = []
    for row in cur.fetchall():
        rec = dict(zip(names, row, strict=True))
        for mk in ("attributes", "pii_counts"):
            val = rec.get(mk)
            rec[mk] = dict(val) if isinstance(val, dict) else dict(val or {})
        items.append(rec)
    con.close()
    return int(total_row[0]) if total_row else 0, items


def lake_rows(*, settings: Settings, table: str) -> int:
    """Return the number of rows stored in a lake table (0 when absent)."""
    files = part_files(settings, table)
    if not files:
        return 0
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def table_path(*, settings: Settings, kind: RecordKind) -> Path:
    """Return the folder of ``kind``'s lake table."""
    return table_dir(settings, LAKE_TABLES[kind][0])
