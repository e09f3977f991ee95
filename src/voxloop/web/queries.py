"""Dashboard queries over the Parquet lake: aggregated in DuckDB, only results reach Python.

Timestamps are stored in UTC; every value fetched here is converted in SQL to naive local
time of ``settings.timezone`` (the dashboard's wall clock), so no tz database is needed
on the Python side.  The ``readings`` and ``quarantine`` tables are optional: pages work
before understanding or ingest has written them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from voxloop.config import Settings
from voxloop.store.service import lake_connection
from voxloop.web.schemas import Facets, Overview, Scope, VoiceFilters, VoicePage, VoiceRow

#: Scenario codes in display order (domain reference, section 6).
SCENARIOS = (
    "BILL",
    "USAGE",
    "PLAN",
    "UNSUB",
    "MKT",
    "CHNL",
    "PRIV",
    "INTL",
    "MNET",
    "HBB",
    "CMPL",
    "SVC",
    "SUPV",
    "TERM",
)
SENTIMENTS = ("negative", "neutral", "positive")
#: Channels shown as their own line on the overview; the rest are summed as ``other``.
TOP_CHANNELS = 6

_READING_COLUMNS = (
    "voice_id",
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
    "read_at",
)

_LATEST_READINGS = f"""
latest AS (
    SELECT {", ".join(_READING_COLUMNS)} FROM readings {{where}}
    QUALIFY row_number() OVER (PARTITION BY voice_id ORDER BY read_at DESC) = 1
)"""

_VOICE_COLUMNS = """
    v.id, timezone(?, v.received_at) AS local_at, v.channel, v.kind,
    v.province, v.city, v.district, v.text,
    coalesce(list_sum(map_values(v.pii_counts)), 0) AS pii"""

_ROW_READING = """
    r.scenario, r.subcategory, r.scenario_confidence, r.scenario_source, r.sentiment,
    r.sentiment_score, r.emotion, r.urgency, r.escalation_risk, r.needs_review"""


def _tables(con: Any) -> set[str]:
    rows = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    return {str(r[0]) for r in rows}


def _has_readings(con: Any, tables: set[str]) -> bool:
    if "readings" not in tables:
        return False
    cols = {str(r[0]) for r in con.execute("DESCRIBE readings").fetchall()}
    return set(_READING_COLUMNS) <= cols


def _scope_where(scope: Scope) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for col in ("province", "city", "district"):
        value = getattr(scope, col)
        if value:
            clauses.append(f"v.{col} = ?")
            params.append(value)
    if scope.days:
        clauses.append("v.received_at > (SELECT max(received_at) FROM voices) - to_days(?)")
        params.append(scope.days)
    return (" AND ".join(clauses) or "TRUE"), params


def _row(values: tuple[Any, ...], with_reading: bool) -> VoiceRow:
    row = VoiceRow(
        id=values[0],
        received_at=values[1],
        channel=values[2],
        kind=values[3],
        province=values[4],
        city=values[5],
        district=values[6],
        text=values[7],
        pii=int(values[8] or 0),
    )
    if with_reading:
        (
            row.scenario,
            row.subcategory,
            row.scenario_confidence,
            row.scenario_source,
            row.sentiment,
            row.sentiment_score,
            row.emotion,
            row.urgency,
            row.escalation_risk,
            row.needs_review,
        ) = values[9:19]
    return row


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


def overview(*, settings: Settings, scope: Scope, latest_limit: int = 12) -> Overview:
    """Aggregate the overview page: volumes by time, channel, region, scenario, sentiment."""
    result = Overview()
    con = lake_connection(settings)
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
        where, params = _scope_where(scope)
        scoped = (
            "WITH scoped AS (SELECT v.id, v.received_at, v.channel, v.province, v.city, "
            f"v.district FROM voices v WHERE {where}) "
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
            "- INTERVAL 1 DAY) FROM scoped",
            [tz, tz],
        )[0]
        k = result.kpis
        k.voices, k.first_at, k.last_at, k.voices_last_day = (
            int(kpi[0]),
            kpi[1],
            kpi[2],
            int(kpi[3]),
        )
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
            [(b, ch, n) for (b, ch), n in merged.items()],
            start=start,
            end=end,
            step=step,
            keys=keys,
        )

        level: Literal["province", "city", "district"] = (
            "district" if scope.city else "city" if scope.province else "province"
        )
        result.region_level = level
        result.by_region = [
            (name, int(n))
            for name, n in fetch(
                f"SELECT {level}, count(*) AS n FROM scoped GROUP BY 1 "
                "ORDER BY n DESC, 1 NULLS LAST LIMIT 20"
            )
        ]

        result.has_readings = _has_readings(con, tables)
        if result.has_readings:
            scoped += (
                ", "
                + _LATEST_READINGS.format(where="WHERE voice_id IN (SELECT id FROM scoped)")
                + ", scoped_read AS (SELECT s.received_at, r.* FROM scoped s "
                "JOIN latest r ON r.voice_id = s.id) "
            )
            kr = fetch(
                "SELECT count(*), avg(CASE WHEN sentiment = 'negative' THEN 1.0 ELSE 0.0 END), "
                "count(*) FILTER (WHERE needs_review), count(*) FILTER (WHERE escalation_risk) "
                "FROM scoped_read"
            )[0]
            k.read, k.negative_share = int(kr[0]), (float(kr[1]) if kr[1] is not None else None)
            k.needs_review, k.escalation_risk = int(kr[2]), int(kr[3])
            by_scen: dict[str, dict[str, int]] = {}
            for scen, sent, n in fetch(
                "SELECT coalesce(scenario, '?'), coalesce(sentiment, 'neutral'), count(*) "
                "FROM scoped_read GROUP BY ALL"
            ):
                by_scen.setdefault(scen, {})[sent] = int(n)
            order = {code: i for i, code in enumerate(SCENARIOS)}
            result.by_scenario = dict(
                sorted(by_scen.items(), key=lambda kv: (-sum(kv[1].values()), order.get(kv[0], 99)))
            )
            srows = fetch(
                f"SELECT date_trunc('{bucket}', timezone(?, received_at)), sentiment, count(*) "
                "FROM scoped_read WHERE sentiment IN ('negative', 'neutral', 'positive') "
                "GROUP BY ALL",
                [tz],
            )
            present = [s for s in SENTIMENTS if any(r[1] == s for r in srows)]
            result.sentiment_trend = _series_fill(
                srows, start=start, end=end, step=step, keys=present
            )

        sql = (
            f"WITH page AS (SELECT {_VOICE_COLUMNS} , v.received_at AS ts FROM voices v "
            f"WHERE {where} ORDER BY v.received_at DESC, v.id LIMIT ?)"
        )
        if result.has_readings:
            sql += (
                ", "
                + _LATEST_READINGS.format(where="WHERE voice_id IN (SELECT id FROM page)")
                + f" SELECT page.* EXCLUDE (ts), {_ROW_READING} FROM page "
                "LEFT JOIN latest r ON r.voice_id = page.id ORDER BY page.ts DESC, page.id"
            )
        else:
            sql += " SELECT * EXCLUDE (ts) FROM page ORDER BY ts DESC, id"
        result.latest = [
            _row(tuple(r), result.has_readings)
            for r in con.execute(sql, [tz, *params, latest_limit]).fetchall()
        ]
        return result
    finally:
        con.close()


def _trunc(ts: datetime, bucket: Literal["day", "hour"]) -> datetime:
    if bucket == "day":
        return ts.replace(hour=0, minute=0, second=0, microsecond=0)
    return ts.replace(minute=0, second=0, microsecond=0)


def _filter_where(filters: VoiceFilters, tz: str) -> tuple[str, list[Any], bool]:
    clauses: list[str] = []
    params: list[Any] = []
    for col in ("province", "city", "district", "channel", "kind"):
        value = getattr(filters, col)
        if value:
            clauses.append(f"v.{col} = ?")
            params.append(value)
    if filters.date_from:
        clauses.append("timezone(?, v.received_at) >= CAST(? AS TIMESTAMP)")
        params += [tz, filters.date_from.isoformat()]
    if filters.date_to:
        clauses.append("timezone(?, v.received_at) < CAST(? AS TIMESTAMP) + INTERVAL 1 DAY")
        params += [tz, filters.date_to.isoformat()]
    if filters.q:
        clauses.append("contains(lower(v.text), lower(?))")
        params.append(filters.q)
    needs_reading = False
    if filters.scenario:
        clauses.append("r.scenario = ?")
        params.append(filters.scenario)
        needs_reading = True
    if filters.sentiment:
        clauses.append("r.sentiment = ?")
        params.append(filters.sentiment)
        needs_reading = True
    if filters.review is not None:
        clauses.append("r.needs_review = ?")
        params.append(filters.review)
        needs_reading = True
    return (" AND ".join(clauses) or "TRUE"), params, needs_reading


def list_voices(*, settings: Settings, filters: VoiceFilters) -> VoicePage:
    """Return one page of voices matching ``filters``, newest first, with latest readings."""
    con = lake_connection(settings)
    try:
        tables = _tables(con)
        has_readings = _has_readings(con, tables)
        empty = VoicePage(
            rows=[], total=0, page=filters.page, per_page=filters.per_page, has_readings=False
        )
        if "voices" not in tables:
            return empty
        tz = settings.timezone
        where, params, needs_reading = _filter_where(filters, tz)
        if needs_reading and not has_readings:
            return empty
        offset = (filters.page - 1) * filters.per_page
        if needs_reading:
            # Reading filters decide which voices match, so join before paging.
            base = (
                "WITH "
                + _LATEST_READINGS.format(where="")
                + " , hits AS (SELECT v.*, "
                + _ROW_READING
                + " FROM voices v JOIN latest r ON r.voice_id = v.id WHERE "
                + where
                + ")"
            )
            total = int(con.execute(base + " SELECT count(*) FROM hits", params).fetchone()[0])
            sql = (
                base
                + " SELECT "
                + _VOICE_COLUMNS
                + ", "
                + _ROW_READING.replace("r.", "v.")
                + " FROM hits v ORDER BY v.received_at DESC, v.id LIMIT ? OFFSET ?"
            )
            rows = con.execute(sql, [*params, tz, filters.per_page, offset]).fetchall()
        else:
            total = int(
                con.execute(f"SELECT count(*) FROM voices v WHERE {where}", params).fetchone()[0]
            )
            sql = (
                f"WITH page AS (SELECT {_VOICE_COLUMNS}, v.received_at AS ts FROM voices v "
                f"WHERE {where} ORDER BY v.received_at DESC, v.id LIMIT ? OFFSET ?)"
            )
            if has_readings:
                sql += (
                    ", "
                    + _LATEST_READINGS.format(where="WHERE voice_id IN (SELECT id FROM page)")
                    + f" SELECT page.* EXCLUDE (ts), {_ROW_READING} FROM page "
                    "LEFT JOIN latest r ON r.voice_id = page.id ORDER BY page.ts DESC, page.id"
                )
            else:
                sql += " SELECT * EXCLUDE (ts) FROM page ORDER BY ts DESC, id"
            rows = con.execute(sql, [tz, *params, filters.per_page, offset]).fetchall()
        return VoicePage(
            rows=[_row(tuple(r), has_readings) for r in rows],
            total=total,
            page=filters.page,
            per_page=filters.per_page,
            has_readings=has_readings,
        )
    finally:
        con.close()


def facets(*, settings: Settings, province: str | None, city: str | None) -> Facets:
    """Return the distinct channels, kinds, regions and scenarios for the filter form."""
    out = Facets()
    con = lake_connection(settings)
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

        out.channels = distinct("channel")
        out.kinds = distinct("kind")
        out.provinces = distinct("province")
        if province:
            out.cities = distinct("city", "province = ?", [province])
        if province and city:
            out.districts = distinct("district", "province = ? AND city = ?", [province, city])
        if _has_readings(con, tables):
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
