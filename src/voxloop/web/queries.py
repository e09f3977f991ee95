"""Dashboard queries over the Parquet lake: aggregated in DuckDB, only results reach Python.

Timestamps are stored in UTC; every value fetched here is converted in SQL to naive local
time of ``settings.timezone`` (the dashboard's wall clock), so no tz database is needed
on the Python side.  The ``readings`` and ``quarantine`` tables are optional: pages work
before understanding or ingest has written them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, TypeVar

import duckdb

from voxloop.config import Settings
from voxloop.store.service import lake_connection, part_files
from voxloop.understand.taxonomy import SCENARIO_CODES
from voxloop.web.schemas import (
    Facets,
    KPIs,
    Overview,
    PageFilters,
    ReadingRow,
    Scope,
    VoiceDetail,
    VoiceFilters,
    VoicePage,
    VoiceRow,
)

#: Scenario codes in display order (domain reference, section 6).
SCENARIOS = SCENARIO_CODES
SENTIMENTS = ("negative", "neutral", "positive")
#: Channels shown as their own line on the overview; the rest are summed as ``other``.
TOP_CHANNELS = 6
#: Bars in the region chart, and regions with a trend line in the table below it.
REGION_LIMIT = 16
REGION_TRENDS = 6

#: Columns of a reading shown with a voice; with ``voice_id`` and ``read_at`` required.
_READING_FIELDS = (
    "scenario",
    "subcategory",
    "scenario_confidence",
    "scenario_source",
    "sentiment",
    "sentiment_score",
    "emotion",
    "urgency",
    "escalation_risk",
    "needs_review",
)

_VOICE_COLUMNS = (
    "v.id, timezone(?, v.received_at), v.channel, v.kind, v.province, v.city, v.district, "
    "v.text, coalesce(list_sum(map_values(v.pii_counts)), 0)"
)


T = TypeVar("T")
#: Results kept per process; a key names every part file read, see ``_cached``.
CACHE_SIZE = 64
_cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_cache_lock = threading.Lock()


#: Lake tables the pages read; their part lists make up a lake version.
_PAGE_TABLES = ("voices", "readings", "quarantine", "voice_rollup")
#: One DuckDB database per lake version, its views made once; each query takes a cursor.
_BASES_KEPT = 4
_bases: OrderedDict[tuple[Any, ...], Any] = OrderedDict()


def _version(settings: Settings) -> tuple[Any, ...]:
    # Lake parts are immutable and every write adds a part with a new name, so the list
    # of part names is an exact version of the lake.
    return (
        str(settings.lake_dir.resolve()),
        tuple(
            (table, tuple(p.name for p in part_files(settings, table))) for table in _PAGE_TABLES
        ),
    )


def _connect(settings: Settings) -> Any:
    """Return a DuckDB cursor over the lake's views, shared by every query of a lake version.

    Creating the views binds every part's schema (tens of ms over a few dozen parts);
    a page runs several queries, so the database and its views (and DuckDB's cache of
    Parquet footers) are made once per lake version and each caller gets its own cursor
    (a connection of its own, safe to use from its thread; temp tables stay its own).
    """
    key = _version(settings)
    with _cache_lock:
        base = _bases.get(key)
        if base is not None:
            _bases.move_to_end(key)
            return base.cursor()
    names = tuple(table for table, parts in key[1] if parts and table != "voice_rollup")
    fresh = lake_connection(settings, names)
    with _cache_lock:
        base = _bases.setdefault(key, fresh)
        while len(_bases) > _BASES_KEPT:
            # Not closed: a cursor still running a query keeps its database alive.
            _bases.popitem(last=False)
        return base.cursor()


def _cached(settings: Settings, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
    # A cached result stays correct until a part is added or removed (see ``_version``),
    # and the key then changes by itself.
    full = (*_version(settings), settings.timezone, *key)
    with _cache_lock:
        if full in _cache:
            _cache.move_to_end(full)
            hit: T = _cache[full]
            return hit
    value = compute()
    with _cache_lock:
        _cache[full] = value
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return value


def clear_cache() -> None:
    """Forget every cached result and shared connection (benchmarks; tests that rewrite a
    lake in place): the next page reads as the first one after an ingest does."""
    with _cache_lock:
        _cache.clear()
        _bases.clear()


def _tables(con: Any) -> set[str]:
    rows = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    return {str(r[0]) for r in rows}


def _has_readings(con: Any, tables: set[str]) -> bool:
    if "readings" not in tables:
        return False
    cols = {str(r[0]) for r in con.execute("DESCRIBE readings").fetchall()}
    return {"voice_id", "read_at", *_READING_FIELDS} <= cols


def _scope_where(scope: Scope, tz: str, *, has_readings: bool) -> tuple[str, list[Any]]:
    where, params, reading = _filter_where(scope, tz)
    if reading:
        if not has_readings:
            return "FALSE", []
        sql, extra = _latest_match(reading)
        where += f" AND v.id IN ({sql})"
        params += extra
    return where.removeprefix("TRUE AND "), params


def _latest_match(reading: list[tuple[str, str, Any]]) -> tuple[str, list[Any]]:
    """Return SQL selecting the voice ids whose latest reading matches ``reading``."""
    # Only voices with at least one matching reading can match, so the latest reading
    # (arg_max over read_at) is computed for those candidates only.
    raw = " AND ".join(f"{column} = ?" for column, _, _ in reading)
    latest = " AND ".join(f"x.{short} = ?" for _, short, _ in reading)
    sql = (
        "SELECT voice_id FROM (SELECT voice_id, arg_max(struct_pack(sc := scenario, "
        "se := sentiment, nr := needs_review), read_at) AS x FROM readings "
        f"WHERE voice_id IN (SELECT DISTINCT voice_id FROM readings WHERE {raw}) "
        f"GROUP BY voice_id) WHERE {latest}"
    )
    return sql, [value for _, _, value in reading] * 2


#: Readings are made after a voice arrives; this margin allows for skewed source clocks
#: when a page looks only at readings newer than its voices (see ``_window_where``).
READ_MARGIN = timedelta(days=1)


def _rows(
    con: Any,
    sql: str,
    params: list[Any],
    *,
    with_readings: bool,
    read_after: datetime | None = None,
) -> list[VoiceRow]:
    rows = [
        VoiceRow(
            id=v[0],
            received_at=v[1],
            channel=v[2],
            kind=v[3],
            province=v[4],
            city=v[5],
            district=v[6],
            text=v[7],
            pii=int(v[8] or 0),
        )
        for v in con.execute(sql, params).fetchall()
    ]
    if with_readings and rows:
        # A page is a few dozen voices: look their readings up by id (Parquet min/max
        # statistics prune most row groups) instead of joining against every reading.
        marks = ", ".join("?" for _ in rows)
        after = "" if read_after is None else " AND read_at >= ?"
        found = con.execute(
            f"SELECT voice_id, {', '.join(_READING_FIELDS)} FROM readings "
            f"WHERE voice_id IN ({marks}){after} "
            "QUALIFY row_number() OVER (PARTITION BY voice_id ORDER BY read_at DESC) = 1",
            [r.id for r in rows] + ([] if read_after is None else [read_after]),
        ).fetchall()
        by_id = {f[0]: f[1:] for f in found}
        for row in rows:
            for name, value in zip(_READING_FIELDS, by_id.get(row.id, ()), strict=False):
                setattr(row, name, value)
    return rows


def _fold_channels(
    result: Overview,
    rows: Sequence[tuple[datetime, str, int]],
    *,
    start: datetime,
    end: datetime,
    step: timedelta,
) -> None:
    """Fold (bucket, channel, n) rows into the top channels' series plus "other"."""
    totals: dict[str, int] = {}
    for _, ch, n in rows:
        totals[ch] = totals.get(ch, 0) + int(n)
    ranked = sorted(totals, key=lambda c: (-totals[c], c))
    top = ranked[:TOP_CHANNELS]
    merged: dict[tuple[datetime, str], int] = {}
    for b, ch, n in rows:
        key = (b, ch if ch in top else "other")
        merged[key] = merged.get(key, 0) + int(n)
    keys = top + (["other"] if len(ranked) > TOP_CHANNELS else [])
    result.by_channel = _series_fill(
        [(b, ch, n) for (b, ch), n in merged.items()], start=start, end=end, step=step, keys=keys
    )


def _fold_regions(
    result: Overview,
    region_rows: Sequence[tuple[str | None, datetime, int]],
    *,
    start: datetime,
    end: datetime,
    step: timedelta,
) -> None:
    """Fold (region, bucket, n) rows into the region ranking and the top regions' trends."""
    region_totals: dict[str | None, int] = {}
    for name, _, n in region_rows:
        region_totals[name] = region_totals.get(name, 0) + int(n)
    result.by_region = sorted(
        region_totals.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or "")
    )[:REGION_LIMIT]
    shown = {name for name, _ in result.by_region[:REGION_TRENDS]}
    index = {name: i for i, name in enumerate(shown)}
    filled = _series_fill(
        [(b, str(index[name]), int(n)) for name, b, n in region_rows if name in shown],
        start=start,
        end=end,
        step=step,
        keys=[str(i) for i in range(len(index))],
    )
    result.region_trend = {name: [n for _, n in filled[str(i)]] for name, i in index.items()}


def _fold_readings(
    result: Overview,
    k: KPIs,
    agg: list[tuple[datetime, str, str | None, int, int, int]],
    *,
    start: datetime,
    end: datetime,
    step: timedelta,
) -> None:
    """Fold (bucket, scenario, sentiment, n, needs review, escalation) rows into the overview."""
    by_scen: dict[str, dict[str, int]] = {}
    trend: list[tuple[datetime, str, int]] = []
    negative = 0
    for b, scen, sent, n, review, escalation in agg:
        k.read += int(n)
        k.needs_review += int(review)
        k.escalation_risk += int(escalation)
        cell = by_scen.setdefault(scen, {})
        mood = sent if sent in SENTIMENTS else "neutral"
        cell[mood] = cell.get(mood, 0) + int(n)
        if sent in SENTIMENTS:
            trend.append((b, str(sent), int(n)))
        negative += int(n) if sent == "negative" else 0
    k.negative_share = negative / k.read if k.read else None
    order = {code: i for i, code in enumerate(SCENARIOS)}
    result.by_scenario = dict(
        sorted(by_scen.items(), key=lambda kv: (-sum(kv[1].values()), order.get(kv[0], 99)))
    )
    summed: dict[tuple[datetime, str], int] = {}
    for b, sent_, n in trend:
        summed[(b, sent_)] = summed.get((b, sent_), 0) + n
    present = [x for x in SENTIMENTS if any(key[1] == x for key in summed)]
    result.sentiment_trend = _series_fill(
        [(b, sent_, n) for (b, sent_), n in summed.items()],
        start=start,
        end=end,
        step=step,
        keys=present,
    )


def _series_fill(
    rows: list[tuple[datetime, str, int]],
    *,
    start: datetime,
    end: datetime,
    step: timedelta,
    keys: list[str],
) -> dict[str, list[tuple[datetime, int]]]:
    # Buckets with no voices are real zeros; without them a line would bridge the gap.
    buckets: list[datetime] = []
    t = start
    while t <= end:
        buckets.append(t)
        t += step
    counts = {(b, k): n for b, k, n in rows}
    return {k: [(b, int(counts.get((b, k), 0))) for b in buckets] for k in keys}


def last_day(*, settings: Settings) -> date | None:
    """Return the local calendar day of the newest voice of the lake (``None`` when empty).

    Read from the rollup when it is current (a few thousand cells), else from the voices.
    """
    return _cached(settings, ("last_day",), lambda: _last_day(settings=settings))


def _last_day(*, settings: Settings) -> date | None:
    from voxloop.store.rollups import rollup_is_current, rollup_source

    con = _connect(settings)
    try:
        if "voices" not in _tables(con):
            return None
        if rollup_is_current(settings=settings):
            try:
                found = con.execute(
                    f"SELECT max(day) FROM {rollup_source(settings, set())} WHERE n > 0"
                ).fetchone()
                return found[0] if found else None
            except duckdb.IOException:
                pass  # the cube was compacted meanwhile: the scan answers this once
        found = con.execute(
            "SELECT CAST(timezone(?, max(received_at)) AS DATE) FROM voices", [settings.timezone]
        ).fetchone()
        return found[0] if found else None
    finally:
        con.close()


def period_scope(*, settings: Settings, scope: Scope) -> Scope:
    """Turn the period pill ``days=N`` into ``from``: the last N local days of the data.

    The window is the day of the newest voice and the N - 1 days before it (calendar
    days, as the rollup counts them), intersected with any ``from`` already set.  The
    result has ``days`` cleared, so the rollup answers it instead of a scan of the lake.
    """
    if not scope.days:
        return scope
    newest = last_day(settings=settings)
    if newest is None:
        return scope.model_copy(update={"days": None})
    since = newest - timedelta(days=scope.days - 1)
    if scope.date_from is not None and scope.date_from > since:
        since = scope.date_from
    return scope.model_copy(update={"date_from": since, "days": None})


def overview(*, settings: Settings, scope: Scope, latest_limit: int = 12) -> Overview:
    """Aggregate the overview page: volumes by time, channel, region, scenario, sentiment.

    A period pill (``days``) is resolved by ``period_scope`` first.  Results are cached
    per lake version (see ``_cached``); treat them as read-only.
    """
    pill = bool(scope.days)
    scope = period_scope(settings=settings, scope=scope)

    def compute() -> Overview:
        result = _overview(settings=settings, scope=scope, latest_limit=latest_limit)
        if pill:
            result.period_from = scope.date_from
        return result

    return _cached(settings, ("overview", scope.model_dump_json(), pill, latest_limit), compute)


def _overview(*, settings: Settings, scope: Scope, latest_limit: int) -> Overview:
    result = Overview()
    con = _connect(settings)
    try:
        tables = _tables(con)
        if "quarantine" in tables:
            result.kpis.quarantined = int(
                con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
            )
            cols = {str(r[0]) for r in con.execute("DESCRIBE quarantine").fetchall()}
            if "kind" in cols:
                result.quarantine_by_kind = [
                    (str(kind), int(n))
                    for kind, n in con.execute(
                        "SELECT coalesce(kind, '?'), count(*) AS n FROM quarantine "
                        "GROUP BY 1 ORDER BY n DESC, 1 LIMIT 5"
                    ).fetchall()
                ]
        if "voices" not in tables:
            return result
        tz = settings.timezone
        has_readings = _has_readings(con, tables)
        if _rollup_usable(settings, scope):
            rolled = Overview(kpis=KPIs(quarantined=result.kpis.quarantined))
            rolled.quarantine_by_kind = result.quarantine_by_kind
            try:
                done = _overview_from_rollup(
                    con,
                    settings,
                    scope,
                    rolled,
                    has_readings=has_readings,
                    latest_limit=latest_limit,
                )
            except duckdb.IOException:
                # update_rollups compacted the cube meanwhile: the scan answers this once.
                done = False
            if done:
                return rolled
        where, params = _scope_where(scope, tz, has_readings=has_readings)
        scoped = (
            "WITH scoped AS (SELECT v.id, v.received_at, v.channel, v.province, v.city, "
            "v.district, coalesce(list_sum(map_values(v.pii_counts)), 0) AS pii "
            f"FROM voices v WHERE {where})"
        )

        def fetch(sql: str, extra: list[Any] | None = None) -> list[tuple[Any, ...]]:
            # The scope is a CTE rather than a temp table: DuckDB pushes the projection
            # into the Parquet scan, so nothing is materialised per request.
            rows: list[tuple[Any, ...]] = con.execute(
                scoped + sql, [*params, *(extra or [])]
            ).fetchall()
            return rows

        kpi = fetch(
            "SELECT count(*), timezone(?, min(received_at)), timezone(?, max(received_at)), "
            "count(*) FILTER (WHERE received_at > (SELECT max(received_at) FROM scoped) "
            "- INTERVAL 1 DAY), coalesce(sum(pii), 0), count(*) FILTER (WHERE pii > 0) "
            "FROM scoped",
            [tz, tz],
        )[0]
        k = result.kpis
        k.voices, k.first_at, k.last_at, k.voices_last_day = (
            int(kpi[0]),
            kpi[1],
            kpi[2],
            int(kpi[3]),
        )
        k.pii_masked, k.pii_voices = int(kpi[4]), int(kpi[5])
        if k.voices == 0 or k.first_at is None or k.last_at is None:
            return result
        span = k.last_at - k.first_at
        bucket: Literal["day", "hour"] = "day" if span > timedelta(days=3) else "hour"
        result.bucket = bucket
        step = timedelta(days=1) if bucket == "day" else timedelta(hours=1)
        start = _trunc(k.first_at, bucket)
        end = _trunc(k.last_at, bucket)

        rows = fetch(
            f"SELECT date_trunc('{bucket}', timezone(?, received_at)) AS b, channel, count(*) "
            "FROM scoped GROUP BY ALL",
            [tz],
        )
        _fold_channels(result, rows, start=start, end=end, step=step)

        level: Literal["province", "city", "district"] = (
            "district" if scope.city else "city" if scope.province else "province"
        )
        result.region_level = level
        region_rows = fetch(
            f"SELECT {level}, date_trunc('{bucket}', timezone(?, received_at)), count(*) "
            "FROM scoped GROUP BY ALL",
            [tz],
        )
        _fold_regions(result, region_rows, start=start, end=end, step=step)

        result.has_readings = has_readings
        if result.has_readings:
            # One pass: latest reading per voice (arg_max over read_at, exact even when a
            # voice was read several times), joined to the scope and aggregated by
            # (bucket, scenario, sentiment); cards, scenario bars and the trend derive
            # from these few rows.
            restrict = "WHERE voice_id IN (SELECT id FROM scoped)" if where != "TRUE" else ""
            agg = fetch(
                ", latest_agg AS (SELECT voice_id, arg_max(struct_pack(sc := scenario, "
                "se := sentiment, nr := needs_review, er := escalation_risk), read_at) AS x "
                f"FROM readings {restrict} GROUP BY voice_id) "
                f"SELECT date_trunc('{bucket}', timezone(?, s.received_at)) AS b, "
                "coalesce(l.x.sc, '?'), l.x.se, count(*), count(*) FILTER (WHERE l.x.nr), "
                "count(*) FILTER (WHERE l.x.er) FROM scoped s "
                "JOIN latest_agg l ON l.voice_id = s.id GROUP BY ALL",
                [tz],
            )
            _fold_readings(result, k, agg, start=start, end=end, step=step)

        result.latest = _rows(
            con,
            f"SELECT {_VOICE_COLUMNS} FROM voices v WHERE {where} "
            "ORDER BY v.received_at DESC, v.id LIMIT ?",
            [tz, *params, latest_limit],
            with_readings=result.has_readings,
        )
        return result
    finally:
        con.close()


def _rollup_usable(settings: Settings, filters: PageFilters) -> bool:
    """Return whether the rollup answers ``filters`` exactly (bar filters only, up to date)."""
    from voxloop.store.rollups import rollup_is_current

    if getattr(filters, "days", None) or getattr(filters, "kind", None):
        return False
    if getattr(filters, "q", None) or getattr(filters, "review", None) is not None:
        return False
    return rollup_is_current(settings=settings)


_CELL_DIMS = ("province", "city", "district", "channel", "scenario", "sentiment")


def _filter_dims(filters: PageFilters) -> set[str]:
    """Return the rollup dimensions ``filters`` restricts."""
    return {col for col in _CELL_DIMS if getattr(filters, col)}


def _cells(settings: Settings, filters: PageFilters, dims: set[str] | None = None) -> str:
    """Return SQL for the rollup cells inside ``filters``, from the smallest cube that
    holds the filtered dimensions and ``dims`` (the ones the caller groups by)."""
    from voxloop.store.rollups import rollup_source

    clauses: list[str] = []
    for col in _CELL_DIMS:
        value = getattr(filters, col)
        if value:
            clauses.append(f"{col} = {_sql_literal(value)}")
    if filters.date_from:
        clauses.append(f"day >= {_sql_literal(filters.date_from)}")
    if filters.date_to:
        clauses.append(f"day <= {_sql_literal(filters.date_to)}")
    where = " AND ".join(clauses) or "TRUE"
    source = rollup_source(settings, _filter_dims(filters) | (dims or set()))
    return f"(SELECT * FROM {source} WHERE {where})"


def _sql_literal(value: Any) -> str:
    # Views cannot take parameters: values are quoted here (a quote is doubled).
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def _newest(
    con: Any,
    settings: Settings,
    filters: PageFilters,
    *,
    offset: int,
    limit: int,
    with_readings: bool,
    per_day: list[tuple[date, int]] | None = None,
) -> list[VoiceRow]:
    """Return matching voices ``offset`` .. ``offset + limit`` (newest first) via ``cells``.

    The rollup's exact count per local day (``per_day``, newest first; read from ``cells``
    when not given) says which days hold the wanted rows, so only those days of the lake
    are read (Parquet statistics skip the rest).
    """
    if per_day is None:
        per_day = con.execute(
            f"SELECT day, sum(n) FROM {_cells(settings, filters)} GROUP BY day "
            "HAVING sum(n) > 0 ORDER BY day DESC"
        ).fetchall()
    newer = in_window = 0
    first_day = last_day = None
    for day, count in per_day:
        n = int(count)
        if last_day is None and newer + n <= offset:
            newer += n  # wholly before the wanted rows
            continue
        if last_day is None:
            last_day = day
        first_day = day
        in_window += n
        if newer + in_window >= offset + limit:
            break
    if first_day is None or last_day is None:
        return []
    window = filters.model_copy(update={"date_from": first_day, "date_to": last_day})
    tz = settings.timezone
    where, params = _window_where(window, tz)
    return _rows(
        con,
        f"SELECT {_VOICE_COLUMNS} FROM voices v WHERE {where} "
        "ORDER BY v.received_at DESC, v.id LIMIT ? OFFSET ?",
        [tz, *params, limit, offset - newer],
        with_readings=with_readings,
        read_after=_window_start(window, tz),
    )


def _window_where(
    window: PageFilters, tz: str, *, since: datetime | None = None
) -> tuple[str, list[Any]]:
    """Return SQL over voices (``v``) for ``window``; reading filters look at its voices only.

    ``since`` (an instant) also drops the window's voices received at or before it.
    """
    where, params, reading = _filter_where(window, tz)
    if since is not None:
        where += " AND v.received_at > ?"
        params.append(since)
    if not reading:
        return where, params
    # Only the window's voices are candidates, so the latest reading (arg_max over
    # read_at) is computed for those alone instead of for every voice ever read.
    fields = ", ".join(f"{short} := {column}" for column, short, _ in reading)
    match = " AND ".join(f"x.{short} = ?" for _, short, _ in reading)
    base, base_params, _ = _filter_where(
        window.model_copy(update={"scenario": None, "sentiment": None, "review": None}), tz
    )
    if since is not None:
        base += " AND v.received_at > ?"
        base_params.append(since)
    # Readings older than the window's voices cannot be theirs: the bound lets Parquet
    # statistics skip the older reading parts.
    after = _window_start(window, tz)
    if since is not None:
        after = max(after, since - READ_MARGIN)
    where += (
        f" AND v.id IN (SELECT voice_id FROM (SELECT voice_id, arg_max(struct_pack({fields}), "
        "read_at) AS x FROM readings WHERE read_at >= ? AND voice_id IN "
        f"(SELECT v.id FROM voices v WHERE {base}) GROUP BY voice_id) WHERE {match})"
    )
    return where, [*params, after, *base_params, *(value for _, _, value in reading)]


def _window_start(window: PageFilters, tz: str) -> datetime:
    """Return the earliest ``read_at`` a reading of a voice in ``window`` can have."""
    assert window.date_from is not None  # windows always start on a day of the rollup
    return _local_midnight(window.date_from, tz) - READ_MARGIN


def _overview_from_rollup(
    con: Any,
    settings: Settings,
    scope: Scope,
    result: Overview,
    *,
    has_readings: bool,
    latest_limit: int,
) -> bool:
    """Fill ``result`` from the rollup; return ``False`` when the scan must answer instead.

    Daily buckets only: a span of under five days (hourly buckets) is left to the scan.
    """
    level: Literal["province", "city", "district"] = (
        "district" if scope.city else "city" if scope.province else "province"
    )

    def cells(*dims: str) -> str:
        return _cells(settings, scope, set(dims))

    # Each chart reads the smallest cube holding its dimensions and the filtered ones.
    grouped: list[tuple[Any, ...]] = [
        ("d", r[0], None, None, None, None, r[1], 0, 0, 0, r[2], r[3])
        for r in con.execute(
            f"SELECT day, sum(n), sum(pii), sum(pii_voices) FROM {cells()} GROUP BY day"
        ).fetchall()
    ]
    grouped += [
        ("c", r[0], r[1], None, None, None, r[2], 0, 0, 0, 0, 0)
        for r in con.execute(
            f"SELECT day, channel, sum(n) FROM {cells('channel')} GROUP BY ALL"
        ).fetchall()
    ]
    grouped += [
        ("r", r[0], None, r[1], None, None, r[2], 0, 0, 0, 0, 0)
        for r in con.execute(
            f"SELECT day, {level}, sum(n) FROM {cells(level)} GROUP BY ALL"
        ).fetchall()
    ]
    if has_readings:
        grouped += [
            ("s", r[0], None, None, r[1], r[2], 0, r[3], r[4], r[5], 0, 0)
            for r in con.execute(
                "SELECT day, coalesce(scenario, '?'), sentiment, sum(read), sum(review), "
                f"sum(escalation) FROM {cells('scenario', 'sentiment')} GROUP BY ALL"
            ).fetchall()
        ]
    per_day = sorted(((r[1], int(r[6])) for r in grouped if r[0] == "d" and r[6]), reverse=True)
    k = result.kpis
    if not per_day:
        return True  # nothing matches: the empty result is exact
    last_day, first_day = per_day[0][0], per_day[-1][0]
    if (last_day - first_day).days < 5:
        return False
    k.voices = sum(n for _, n in per_day)
    k.pii_masked = sum(int(r[10]) for r in grouped if r[0] == "d")
    k.pii_voices = sum(int(r[11]) for r in grouped if r[0] == "d")
    k.first_at = datetime(first_day.year, first_day.month, first_day.day)
    k.last_at = datetime(last_day.year, last_day.month, last_day.day)
    result.bucket = "day"
    step = timedelta(days=1)
    start, end = k.first_at, k.last_at

    def when(day: date) -> datetime:
        return datetime(day.year, day.month, day.day)

    rows = [(when(r[1]), r[2], int(r[6])) for r in grouped if r[0] == "c" and r[6]]
    _fold_channels(result, rows, start=start, end=end, step=step)
    result.region_level = level
    region_rows = [(r[3], when(r[1]), int(r[6])) for r in grouped if r[0] == "r" and r[6]]
    _fold_regions(result, region_rows, start=start, end=end, step=step)
    result.has_readings = has_readings
    if has_readings:
        agg = [
            (when(r[1]), r[4], r[5], int(r[7]), int(r[8]), int(r[9]))
            for r in grouped
            if r[0] == "s" and r[7]
        ]
        _fold_readings(result, k, agg, start=start, end=end, step=step)
    result.latest = _newest(
        con,
        settings,
        scope,
        offset=0,
        limit=latest_limit,
        with_readings=has_readings,
        per_day=per_day,
    )
    k.voices_last_day = _last_24_hours(con, settings, scope, result.latest, per_day)
    return True


def _last_24_hours(
    con: Any,
    settings: Settings,
    scope: Scope,
    latest: list[VoiceRow],
    per_day: list[tuple[date, int]],
) -> int:
    """Count the matching voices of the 24 hours before the newest one.

    The newest voice (``latest[0]``) lies on the newest local day of ``per_day``, so that
    whole day is inside the 24 hours and its rollup count is exact; only the part of the
    day before that is after the cut-off is read from the lake.
    """
    from zoneinfo import ZoneInfo

    tz = settings.timezone
    last_day, on_last_day = per_day[0]
    if not latest:
        return 0
    newest = latest[0].received_at.replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)
    cutoff = newest - timedelta(days=1)
    before = last_day - timedelta(days=1)
    if cutoff >= _local_midnight(last_day, tz):  # a zone's day longer than 24 hours
        before = last_day
        on_last_day = 0
    window = scope.model_copy(update={"date_from": before, "date_to": before})
    where, params = _window_where(window, tz, since=cutoff)
    found = con.execute(f"SELECT count(*) FROM voices v WHERE {where}", params).fetchone()
    return on_last_day + (int(found[0]) if found else 0)


def _trunc(ts: datetime, bucket: Literal["day", "hour"]) -> datetime:
    if bucket == "day":
        return ts.replace(hour=0, minute=0, second=0, microsecond=0)
    return ts.replace(minute=0, second=0, microsecond=0)


def _local_midnight(day: date, tz: str) -> datetime:
    """Return the UTC instant at which local calendar ``day`` starts in zone ``tz``."""
    from zoneinfo import ZoneInfo

    return datetime.combine(day, time(), ZoneInfo(tz)).astimezone(UTC)


def _filter_where(
    filters: PageFilters, tz: str
) -> tuple[str, list[Any], list[tuple[str, str, Any]]]:
    """Split ``filters`` into SQL over voices (alias ``v``) and over latest readings (``x``)."""
    clauses: list[str] = []
    params: list[Any] = []
    for col in ("province", "city", "district", "channel", "kind"):
        value = getattr(filters, col, None)
        if value:
            clauses.append(f"v.{col} = ?")
            params.append(value)
    # Local calendar days become UTC instants here, so the comparison is on the stored
    # column itself and Parquet min/max statistics can skip whole row groups.
    if filters.date_from:
        clauses.append("v.received_at >= ?")
        params.append(_local_midnight(filters.date_from, tz))
    if filters.date_to:
        clauses.append("v.received_at < ?")
        params.append(_local_midnight(filters.date_to + timedelta(days=1), tz))
    q = getattr(filters, "q", None)
    if q:
        clauses.append("contains(lower(v.text), lower(?))")
        params.append(q)
    reading: list[tuple[str, str, Any]] = []
    for field, column, short in (
        ("scenario", "scenario", "sc"),
        ("sentiment", "sentiment", "se"),
        ("review", "needs_review", "nr"),
    ):
        value = getattr(filters, field, None)
        if value is not None and value != "":
            reading.append((column, short, value))
    return " AND ".join(clauses) or "TRUE", params, reading


def list_voices(*, settings: Settings, filters: VoiceFilters) -> VoicePage:
    """Return one page of voices matching ``filters``, newest first, with latest readings."""
    return _cached(
        settings,
        ("voices", filters.model_dump_json()),
        lambda: _list_voices(settings=settings, filters=filters),
    )


def _list_voices(*, settings: Settings, filters: VoiceFilters) -> VoicePage:
    con = _connect(settings)
    try:
        tables = _tables(con)
        has_readings = _has_readings(con, tables)
        page = VoicePage(
            rows=[], total=0, page=filters.page, per_page=filters.per_page, has_readings=False
        )
        if "voices" not in tables:
            return page
        if _rollup_usable(settings, filters):
            try:
                return _list_from_rollup(con, settings, filters, page, has_readings=has_readings)
            except duckdb.IOException:
                pass  # the cube was compacted meanwhile: the scan answers this once
        tz = settings.timezone
        where, params, reading = _filter_where(filters, tz)
        if reading and not has_readings:
            return page
        if reading:
            # Reading filters decide which voices match, by each voice's latest reading;
            # materialised once: both the count and the page query need it.
            sql, extra = _latest_match(reading)
            con.execute(f"CREATE TEMP TABLE hits AS {sql}", extra)
            where += " AND v.id IN (SELECT voice_id FROM hits)"
        page.has_readings = has_readings
        page.total = int(
            con.execute(f"SELECT count(*) FROM voices v WHERE {where}", params).fetchone()[0]
        )
        page.rows = _rows(
            con,
            f"SELECT {_VOICE_COLUMNS} FROM voices v WHERE {where} "
            "ORDER BY v.received_at DESC, v.id LIMIT ? OFFSET ?",
            [tz, *params, filters.per_page, (filters.page - 1) * filters.per_page],
            with_readings=has_readings,
        )
        return page
    finally:
        con.close()


#: Columns of the voices download, in order (the page's columns, each field on its own).
VOICE_EXPORT_COLUMNS = (
    "id",
    "received_at",
    "channel",
    "kind",
    "province",
    "city",
    "district",
    "text",
    "pii",
    *_READING_FIELDS,
)


def iter_voices(
    *, settings: Settings, filters: VoiceFilters, batch: int = 5000
) -> Iterator[tuple[Any, ...]]:
    """Yield every voice matching ``filters`` (newest first) with its latest reading.

    Paging is ignored; rows are fetched from DuckDB ``batch`` at a time, so a download of
    millions of voices never holds them all in memory.  Columns: ``VOICE_EXPORT_COLUMNS``.
    """
    con = _connect(settings)
    try:
        tables = _tables(con)
        if "voices" not in tables:
            return
        has_readings = _has_readings(con, tables)
        tz = settings.timezone
        where, params, reading = _filter_where(filters, tz)
        if reading and not has_readings:
            return
        if reading:
            sql, extra = _latest_match(reading)
            where += f" AND v.id IN ({sql})"
            params += extra
        if has_readings:
            fields = ", ".join(f"{f} := {f}" for f in _READING_FIELDS)
            latest = ", ".join(f"l.x.{f}" for f in _READING_FIELDS)
            # Latest reading per exported voice only (arg_max over read_at).
            sql = (
                f"WITH lr AS (SELECT voice_id, arg_max(struct_pack({fields}), read_at) AS x "
                f"FROM readings WHERE voice_id IN (SELECT v.id FROM voices v WHERE {where}) "
                f"GROUP BY voice_id) SELECT {_VOICE_COLUMNS}, {latest} FROM voices v "
                f"LEFT JOIN lr l ON l.voice_id = v.id WHERE {where} "
                "ORDER BY v.received_at DESC, v.id"
            )
            cursor = con.execute(sql, [*params, tz, *params])
        else:
            empty = ", ".join(f"NULL AS {f}" for f in _READING_FIELDS)
            cursor = con.execute(
                f"SELECT {_VOICE_COLUMNS}, {empty} FROM voices v WHERE {where} "
                "ORDER BY v.received_at DESC, v.id",
                [tz, *params],
            )
        while rows := cursor.fetchmany(batch):
            yield from (tuple(r) for r in rows)
    finally:
        con.close()


def _list_from_rollup(
    con: Any, settings: Settings, filters: VoiceFilters, page: VoicePage, *, has_readings: bool
) -> VoicePage:
    """Fill ``page`` from the rollup: the exact total, then only the days holding the page."""
    per_day = [
        (day, int(n))
        for day, n in con.execute(
            f"SELECT day, sum(n) FROM {_cells(settings, filters)} GROUP BY day "
            "HAVING sum(n) > 0 ORDER BY day DESC"
        ).fetchall()
    ]
    page.total = sum(n for _, n in per_day)
    page.has_readings = has_readings
    page.rows = _newest(
        con,
        settings,
        filters,
        offset=(filters.page - 1) * filters.per_page,
        limit=filters.per_page,
        with_readings=has_readings,
        per_day=per_day,
    )
    return page


def problem_voice_counts(
    *, settings: Settings, members: Sequence[tuple[str, str]], filters: PageFilters
) -> dict[str, int]:
    """Count, per problem, its member voices that ``filters`` keep.

    ``members`` are ``(problem_id, voice_id)`` pairs.  Every bar filter applies to each
    voice (dates, region, channel; scenario and sentiment by its latest reading), so a
    problem mixing channels and sentiments is kept for the voices that match.
    """
    import pyarrow as pa

    if not members:
        return {}
    con = _connect(settings)
    try:
        if "voices" not in _tables(con):
            return {}
        con.register(
            "members",
            pa.table(
                {
                    "problem_id": [str(m[0]) for m in members],
                    "voice_id": [str(m[1]) for m in members],
                }
            ),
        )
        where, params, reading = _filter_where(filters, settings.timezone)
        if reading:
            if not _has_readings(con, _tables(con)):
                return {}
            fields = ", ".join(f"{short} := {column}" for column, short, _ in reading)
            match = " AND ".join(f"x.{short} = ?" for _, short, _ in reading)
            # The latest reading of the member voices only (arg_max over read_at).
            where += (
                " AND v.id IN (SELECT voice_id FROM (SELECT voice_id, "
                f"arg_max(struct_pack({fields}), read_at) AS x FROM readings "
                "WHERE voice_id IN (SELECT voice_id FROM members) GROUP BY voice_id) "
                f"WHERE {match})"
            )
            params += [value for _, _, value in reading]
        rows = con.execute(
            "SELECT m.problem_id, count(DISTINCT v.id) FROM members m "
            f"JOIN voices v ON v.id = m.voice_id WHERE {where} GROUP BY 1",
            params,
        ).fetchall()
        return {str(pid): int(n) for pid, n in rows}
    finally:
        con.close()


def facets(
    *, settings: Settings, province: str | None, city: str | None, kinds: bool = True
) -> Facets:
    """Return the distinct channels, kinds, regions and scenarios for the filter form.

    ``kinds=False`` leaves ``kinds`` empty: the filter bar does not offer them, and they
    are the one list that needs a scan of the voices when the rollup is current.
    """
    return _cached(
        settings,
        ("facets", province, city, kinds),
        lambda: _facets(settings=settings, province=province, city=city, kinds=kinds),
    )


def _facets(*, settings: Settings, province: str | None, city: str | None, kinds: bool) -> Facets:
    out = Facets()
    con = _connect(settings)
    try:
        tables = _tables(con)
        if "voices" not in tables:
            return out

        def distinct(col: str, where: str = "TRUE", params: list[Any] | None = None) -> list[str]:
            rows = con.execute(
                f"SELECT DISTINCT {col} FROM voices WHERE {col} IS NOT NULL AND {where} "
                f"ORDER BY 1 LIMIT 500",
                params or [],
            ).fetchall()
            return [str(r[0]) for r in rows]

        from voxloop.store.rollups import rollup_is_current, rollup_kinds, rollup_source

        rolled = rollup_is_current(settings=settings)
        if kinds:
            out.kinds = rollup_kinds(settings) if rolled else distinct("kind")

        def values(col: str, where: str = "TRUE", params: list[Any] | None = None) -> list[str]:
            if not rolled:
                return distinct(col, where, params)
            # Every voice is in the rollup: its small cubes hold the same distinct values.
            dims = {col} | {c for c in ("province", "city") if f"{c} = ?" in where}
            rows = con.execute(
                f"SELECT DISTINCT {col} FROM {rollup_source(settings, dims)} "
                f"WHERE {col} IS NOT NULL AND {where} ORDER BY 1 LIMIT 500",
                params or [],
            ).fetchall()
            return [str(r[0]) for r in rows]

        out.channels = values("channel")
        out.provinces = values("province")
        if province:
            out.cities = values("city", "province = ?", [province])
        if province and city:
            out.districts = values("district", "province = ? AND city = ?", [province, city])
        if rolled:
            found = set(values("scenario"))
            out.scenarios = [s for s in SCENARIOS if s in found] + sorted(found - set(SCENARIOS))
        elif _has_readings(con, tables):
            found = {
                str(r[0])
                for r in con.execute(
                    "SELECT DISTINCT scenario FROM readings WHERE scenario IS NOT NULL"
                ).fetchall()
            }
            out.scenarios = [s for s in SCENARIOS if s in found] + sorted(found - set(SCENARIOS))
        return out
    finally:
        con.close()


def voice_detail(*, settings: Settings, voice_id: str) -> VoiceDetail | None:
    """Return one voice with every reading of it (newest first), or ``None`` if unknown."""
    return _cached(
        settings,
        ("voice", voice_id),
        lambda: _voice_detail(settings=settings, voice_id=voice_id),
    )


def _voice_detail(*, settings: Settings, voice_id: str) -> VoiceDetail | None:
    con = _connect(settings)
    try:
        tables = _tables(con)
        if "voices" not in tables:
            return None
        tz = settings.timezone
        found = con.execute(
            f"SELECT {_VOICE_COLUMNS}, v.source, v.language, timezone(?, v.occurred_at), "
            "map_keys(v.attributes), map_values(v.attributes), "
            "map_keys(v.pii_counts), map_values(v.pii_counts) "
            "FROM voices v WHERE v.id = ? ORDER BY v.ingested_at DESC LIMIT 1",
            [tz, tz, voice_id],
        ).fetchone()
        if found is None:
            return None
        voice = VoiceRow(
            id=found[0],
            received_at=found[1],
            channel=found[2],
            kind=found[3],
            province=found[4],
            city=found[5],
            district=found[6],
            text=found[7],
            pii=int(found[8] or 0),
        )
        readings: list[ReadingRow] = []
        if _has_readings(con, tables):
            cols = {str(r[0]) for r in con.execute("DESCRIBE readings").fetchall()}

            def opt(name: str) -> str:
                # intent, model_version and urgency_triggers are shown when present.
                return name if name in cols else f"NULL AS {name}"

            for r in con.execute(
                f"SELECT timezone(?, read_at), {opt('model_version')}, "
                f"{', '.join(_READING_FIELDS[:4])}, {opt('intent')}, "
                f"{', '.join(_READING_FIELDS[4:])}, {opt('urgency_triggers')} "
                "FROM readings WHERE voice_id = ? ORDER BY read_at DESC",
                [tz, voice_id],
            ).fetchall():
                readings.append(
                    ReadingRow(
                        read_at=r[0],
                        model_version=r[1],
                        scenario=r[2],
                        subcategory=r[3],
                        scenario_confidence=r[4],
                        scenario_source=r[5],
                        intent=r[6],
                        sentiment=r[7],
                        sentiment_score=r[8],
                        emotion=r[9],
                        urgency=r[10],
                        escalation_risk=r[11],
                        needs_review=r[12],
                        urgency_triggers=list(r[13] or []),
                    )
                )
        if readings:
            latest = readings[0]
            for name in _READING_FIELDS:
                setattr(voice, name, getattr(latest, name))
        return VoiceDetail(
            voice=voice,
            source=found[9],
            language=found[10],
            occurred_at=found[11],
            attributes=dict(zip(found[12] or [], found[13] or [], strict=False)),
            pii_counts={k: int(v) for k, v in zip(found[14] or [], found[15] or [], strict=False)},
            readings=readings,
        )
    finally:
        con.close()


def readings_summary(
    *, settings: Settings, filters: PageFilters, limit: int = 20
) -> dict[str, Any]:
    """Summarise the latest reading of every voice the filters keep.

    Returns counts per scenario (with names), source and sentiment, and the review and
    escalation queues (most urgent first), as the understanding page shows them.
    """
    return _cached(
        settings,
        ("readings", filters.model_dump_json(), limit),
        lambda: _readings_summary(settings=settings, filters=filters, limit=limit),
    )


def _readings_summary(*, settings: Settings, filters: PageFilters, limit: int) -> dict[str, Any]:
    from voxloop.understand.service import latest_model_version

    out: dict[str, Any] = {
        "total": 0,
        "scenarios": [],
        "sources": [],
        "sentiments": [],
        "review": [],
        "escalations": [],
        "model_version": latest_model_version(settings) or "default",
    }
    con = _connect(settings)
    try:
        tables = _tables(con)
        if not _has_readings(con, tables):
            return out
        has_voices = "voices" in tables
        where, params, reading = _filter_where(filters, settings.timezone)
        if reading:
            sql, extra = _latest_match(reading)
            where += f" AND v.id IN ({sql})"
            params += extra
        if where == "TRUE" or not has_voices:
            if where != "TRUE":
                return out  # region or date filters cannot match without voices
            restrict = ""
        else:
            restrict = f"WHERE voice_id IN (SELECT v.id FROM voices v WHERE {where})"
        con.execute(
            f"CREATE TEMP TABLE latest AS SELECT * FROM readings {restrict} "
            "QUALIFY row_number() OVER (PARTITION BY voice_id ORDER BY read_at DESC) = 1",
            params if restrict else [],
        )

        def grouped(col: str) -> list[dict[str, Any]]:
            rows = con.execute(
                f"SELECT {col}, count(*) AS n FROM latest GROUP BY 1 ORDER BY n DESC, 1"
            ).fetchall()
            return [{"key": k, "n": int(n)} for k, n in rows]

        from voxloop.understand.taxonomy import code_names

        names = code_names().get("scenario", {})
        scenarios = grouped("scenario")
        for s in scenarios:
            s["zh"], s["en"] = names.get(str(s["key"]), (s["key"], s["key"]))
        text = "v.text" if has_voices else "NULL"
        join = "LEFT JOIN voices v ON v.id = l.voice_id" if has_voices else ""

        def listing(cond: str) -> list[dict[str, Any]]:
            rows = con.execute(
                f"SELECT l.voice_id, l.scenario, l.scenario_confidence, l.urgency, {text} "
                f"FROM latest l {join} WHERE {cond} "
                f"ORDER BY l.urgency DESC NULLS LAST, l.voice_id LIMIT {int(limit)}"
            ).fetchall()
            return [
                {
                    "voice_id": r[0],
                    "scenario": r[1],
                    "confidence": r[2],
                    "urgency": r[3],
                    "text": r[4],
                }
                for r in rows
            ]

        out["total"] = int(con.execute("SELECT count(*) FROM latest").fetchone()[0])
        out["scenarios"] = scenarios
        out["sources"] = grouped(
            "CASE WHEN scenario_source LIKE 'rule:%' THEN 'rule' ELSE scenario_source END"
        )
        out["sentiments"] = grouped("sentiment")
        out["review"] = listing("l.needs_review")
        out["escalations"] = listing("l.escalation_risk")
        return out
    finally:
        con.close()
