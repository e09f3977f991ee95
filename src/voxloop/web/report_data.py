"""Facts of the monthly report: every figure of every section, gathered from the domains.

The report never recomputes what a domain already offers: surges come from the detect
alerts (root cause and typical cases included), problems and their daily counts from the
detect problems, commitment checks from ``act.supervision``, the month's complaint KPIs
from ``act.kpis.lake_kpis``, drivers, segments and churn from the cached analyses of the
analyze domain.  What no domain offers for a calendar month (volumes by channel and
scenario, work orders opened/resolved/verified within the month) is aggregated here, in
DuckDB and SQL, so only results reach Python.

A *period* is a calendar month in ``settings.timezone``; "vs last period" compares it
with the month before.  A *region* is a province or ``province/city``; every section is
restricted to it through a region-scoped principal, exactly as a user of that region
would see the dashboard.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from voxloop.act.access import Principal, parse_region, scope_filter
from voxloop.act.kpis import ESCALATION_CHANNELS
from voxloop.act.models import VerificationTask, WorkOrder
from voxloop.config import Settings
from voxloop.errors import UnusableInputError, VoxloopError
from voxloop.store.service import lake_connection

#: Problems listed as the largest and as the fastest-growing.
TOP_PROBLEMS = 5
#: A problem must have at least this many voices in the month to count as growing.
MIN_GROWING = 3
#: Surges listed (largest excess first).
TOP_SURGES = 8
#: Customers at risk listed in a national report.
TOP_CHURN = 10
#: Churn probability from which an active customer counts as at risk.
CHURN_RISK_AT = 0.5

_PERIOD = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True)
class Period:
    """A calendar month in the operator's time zone."""

    year: int
    month: int
    timezone: str

    @property
    def key(self) -> str:
        """Return ``YYYY-MM``."""
        return f"{self.year:04d}-{self.month:02d}"

    def start(self) -> datetime:
        """Return the first instant of the month (aware, in UTC)."""
        return datetime(self.year, self.month, 1, tzinfo=ZoneInfo(self.timezone)).astimezone(UTC)

    def end(self) -> datetime:
        """Return the first instant after the month (aware, in UTC)."""
        return self.next().start()

    def previous(self) -> Period:
        """Return the month before."""
        if self.month == 1:
            return Period(self.year - 1, 12, self.timezone)
        return Period(self.year, self.month - 1, self.timezone)

    def next(self) -> Period:
        """Return the month after."""
        if self.month == 12:
            return Period(self.year + 1, 1, self.timezone)
        return Period(self.year, self.month + 1, self.timezone)

    def days(self) -> int:
        """Return the number of days of the month."""
        return (self.end() - self.start()).days


def parse_period(text: str, *, timezone: str) -> Period:
    """Parse ``YYYY-MM`` into a period; raise ``UnusableInputError`` naming the field."""
    found = _PERIOD.match((text or "").strip())
    if not found or not 1 <= int(found.group(2)) <= 12 or int(found.group(1)) < 1970:
        raise UnusableInputError(f"period {text!r}: expected a month as YYYY-MM, e.g. 2026-10")
    return Period(int(found.group(1)), int(found.group(2)), timezone)


def period_of(at: datetime, *, timezone: str) -> Period:
    """Return the calendar month (in ``timezone``) that contains ``at``."""
    if at.tzinfo is None:
        raise UnusableInputError(f"at {at!r}: expected an aware datetime")
    local = at.astimezone(ZoneInfo(timezone))
    return Period(local.year, local.month, timezone)


def region_principal(region: str | None) -> Principal:
    """Return a read-only principal scoped to ``region`` (``province`` or ``province/city``)."""
    try:
        province, city = parse_region(region)
    except ValueError as exc:
        raise UnusableInputError(str(exc)) from exc
    return Principal(user_id=None, username="report", role="analyst", province=province, city=city)


def region_key(principal: Principal) -> str | None:
    """Return the ``province/city`` key of a principal's scope (``None``: national)."""
    return "/".join(x for x in (principal.province, principal.city) if x) or None


def _change(cur: float | None, prev: float | None) -> float | None:
    """Return the relative change from ``prev`` to ``cur`` (``None`` when undefined)."""
    if cur is None or prev is None or prev == 0:
        return None
    return (cur - prev) / prev


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


# ---------------------------------------------------------------------------
# Volumes


def volumes(*, settings: Settings, principal: Principal, period: Period) -> dict[str, Any]:
    """Count the month's and the previous month's voices by channel, kind, scenario, day."""
    prev = period.previous()
    out: dict[str, Any] = {
        "voices": 0,
        "voices_prev": 0,
        "by_channel": {},
        "by_channel_prev": {},
        "by_kind": {},
        "by_scenario": {},
        "by_scenario_prev": {},
        "negative": 0,
        "negative_prev": 0,
        "read": 0,
        "read_prev": 0,
        "escalation_risk": 0,
        "escalation_risk_prev": 0,
        "escalated_channels": 0,
        "escalated_channels_prev": 0,
        "daily": {},
        "negative_share": None,
        "negative_share_prev": None,
        "change": None,
    }
    con = lake_connection(settings, ("voices", "readings"))
    try:
        views = {
            str(r[0])
            for r in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
        }
        if "voices" not in views:
            return out
        params: list[Any] = [
            settings.timezone,
            period.start().isoformat(),
            prev.start().isoformat(),
            period.end().isoformat(),
        ]
        where = ""
        for col in ("province", "city"):
            value = getattr(principal, col)
            if value is not None:
                where += f" AND {col} = ?"
                params.append(value)
        if "readings" in views:
            latest = (
                "LEFT JOIN (SELECT voice_id, arg_max(struct_pack(sc := scenario, "
                "se := sentiment, er := escalation_risk), read_at) AS x FROM readings "
                "WHERE voice_id IN (SELECT id FROM v) GROUP BY voice_id) r ON r.voice_id = v.id"
            )
            cols = "r.x.sc, r.x.se, coalesce(r.x.er, FALSE)"
        else:
            latest, cols = "", "NULL, NULL, FALSE"
        rows = con.execute(
            # One pass over the two months; the latest reading decides scenario/sentiment
            # (a re-read voice counts once, with its newest reading).
            "WITH v AS (SELECT id, channel, kind, received_at, "
            "date_trunc('day', timezone(?, received_at)) AS day, "
            "received_at >= CAST(? AS TIMESTAMPTZ) AS current FROM voices "
            "WHERE received_at >= CAST(? AS TIMESTAMPTZ) AND received_at < CAST(? AS TIMESTAMPTZ)"
            + where
            + " "
            "QUALIFY row_number() OVER (PARTITION BY id ORDER BY received_at) = 1) "
            f"SELECT v.current, v.day, v.channel, v.kind, {cols}, count(*) "
            f"FROM v {latest} GROUP BY ALL",
            params,
        ).fetchall()
    finally:
        con.close()
    daily: Counter[str] = Counter()
    tallies: dict[str, Counter[str]] = {
        k: Counter() for k in ("by_channel", "by_channel_prev", "by_kind", "by_scenario")
    }
    tallies["by_scenario_prev"] = Counter()
    for current, day, channel, kind, scenario, sentiment, risky, n in rows:
        n = int(n)
        sfx = "" if current else "_prev"
        out["voices" + sfx] += n
        tallies["by_channel" + sfx][str(channel)] += n
        if current:
            tallies["by_kind"][str(kind)] += n
            daily[day.date().isoformat()] += n
        if scenario is not None:
            tallies["by_scenario" + sfx][str(scenario)] += n
        if sentiment is not None:
            out["read" + sfx] += n
            out["negative" + sfx] += n if sentiment == "negative" else 0
        out["escalation_risk" + sfx] += n if risky else 0
        out["escalated_channels" + sfx] += n if channel in ESCALATION_CHANNELS else 0
    for key, counts in tallies.items():
        out[key] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    out["daily"] = dict(sorted(daily.items()))
    out["negative_share"] = _ratio(out["negative"], out["read"])
    out["negative_share_prev"] = _ratio(out["negative_prev"], out["read_prev"])
    out["change"] = _change(out["voices"], out["voices_prev"])
    return out


def complaint_kpis(*, settings: Settings, principal: Principal, period: Period) -> dict[str, Any]:
    """Return the month's and the previous month's rows of ``act.kpis.lake_kpis``."""
    from voxloop.act.kpis import lake_kpis

    con = lake_connection(settings, ("voices", "readings", "customers"))
    try:
        months = {m["month"][:7]: m for m in lake_kpis(con, principal=principal)["months"]}
    finally:
        con.close()
    return {"current": months.get(period.key), "previous": months.get(period.previous().key)}


# ---------------------------------------------------------------------------
# Surges and problems


def _in_period(iso: str, period: Period) -> bool:
    at = datetime.fromisoformat(iso)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return period.start() <= at < period.end()


def surges(
    *, settings: Settings, session: Session, principal: Principal, period: Period
) -> list[dict[str, Any]]:
    """Return the surge alerts that started in the month, largest excess first."""
    from voxloop.detect.service import alert_views, list_alerts

    alerts = list_alerts(session=session, principal=principal, limit=10_000)
    views = alert_views(settings=settings, principal=principal, alerts=alerts)
    found = [a for a in views if _in_period(a["start"], period)]
    found.sort(key=lambda a: (-float(a["excess"]), a["id"]))
    return found


def problems(
    *, settings: Settings, session: Session, principal: Principal, period: Period
) -> dict[str, Any]:
    """Return the month's largest and fastest-growing problems with their work orders."""
    from voxloop.detect.service import list_problems, problem_views

    rows = list_problems(session=session, principal=principal, sort="voices", limit=500)
    views = problem_views(
        settings=settings, session=session, principal=principal, problems=rows, detail=True
    )
    cur_key, prev_key = period.key, period.previous().key
    items: list[dict[str, Any]] = []
    for view in views:
        daily: dict[str, int] = view.get("daily") or {}
        n_cur = sum(n for day, n in daily.items() if day.startswith(cur_key))
        n_prev = sum(n for day, n in daily.items() if day.startswith(prev_key))
        if n_cur == 0:
            continue
        items.append(
            {
                "id": view["id"],
                "title": view["title"],
                "scenario": view["scenario"],
                "state": view["state"],
                "province": view.get("province"),
                "city": view.get("city"),
                "voices": n_cur,
                "voices_prev": n_prev,
                "growth": n_cur - n_prev,
                "typical_cases": [c.get("text") or "" for c in view.get("typical_cases", [])][:2],
                "orders": [],
            }
        )
    ids = [p["id"] for p in items]
    if ids:
        orders = session.execute(
            select(WorkOrder.source_ref, WorkOrder.id, WorkOrder.state, WorkOrder.regressed)
            .where(
                WorkOrder.source_kind == "problem",
                WorkOrder.source_ref.in_(ids),
                scope_filter(principal, WorkOrder.province, WorkOrder.city),
            )
            .order_by(WorkOrder.created_at)
        ).all()
        by_problem: dict[str, list[dict[str, Any]]] = {}
        for ref, oid, state, regressed in orders:
            by_problem.setdefault(str(ref), []).append(
                {"id": oid, "state": state, "regressed": bool(regressed)}
            )
        for item in items:
            item["orders"] = by_problem.get(item["id"], [])
    largest = sorted(items, key=lambda p: (-p["voices"], p["id"]))[:TOP_PROBLEMS]
    growing = sorted(
        (p for p in items if p["voices"] >= MIN_GROWING and p["growth"] > 0),
        key=lambda p: (-p["growth"], -p["voices"], p["id"]),
    )[:TOP_PROBLEMS]
    return {"count": len(items), "largest": largest, "growing": growing}


# ---------------------------------------------------------------------------
# Commitments, work orders, verification


def commitments(
    *, settings: Settings, principal: Principal, period: Period, session: Session | None = None
) -> dict[str, Any]:
    """Check the month against every service commitment: journey events and work-order SLAs.

    Commitments with a supervision rule are checked on the month's request events
    (``act.supervision``); every commitment that gives work orders their due time is also
    measured on the orders due in the month (on time: resolved by the due time).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from voxloop.act import supervision

    con = lake_connection(settings, ("events",))
    try:
        checks = supervision.check_events(con)
    finally:
        con.close()
    if checks.num_rows:
        start = pa.scalar(period.start(), pa.timestamp("us", tz="UTC"))
        end = pa.scalar(period.end(), pa.timestamp("us", tz="UTC"))
        at = checks.column("requested_at")
        mask = pc.and_(pc.greater_equal(at, start), pc.less(at, end))
        checks = checks.filter(mask)
    if principal.province is not None and checks.num_rows:
        keep = [
            principal.sees(p, c)
            for p, c in zip(
                checks.column("province").to_pylist(),
                checks.column("city").to_pylist(),
                strict=True,
            )
        ]
        checks = checks.filter(pa.array(keep, pa.bool_()))
    rules = supervision.compliance(checks)
    checked = sum(r["checked"] for r in rules)
    ok = sum(r["ok"] for r in rules)
    return {
        "orders": [] if session is None else _order_slas(session, principal, period),
        "rules": rules,
        "checked": checked,
        "ok": ok,
        "violations": sum(r["violations"] for r in rules),
        "pending": sum(r["pending"] for r in rules),
        "rate": _ratio(ok, checked),
    }


def _order_slas(session: Session, principal: Principal, period: Period) -> list[dict[str, Any]]:
    """Per commitment: work orders due in the month, resolved on time, late, still open."""
    from voxloop.act.commitments import load_commitments

    book = load_commitments()
    rows = session.execute(
        select(WorkOrder.commitment_id, WorkOrder.due_at, WorkOrder.resolved_at).where(
            scope_filter(principal, WorkOrder.province, WorkOrder.city),
            WorkOrder.commitment_id.is_not(None),
            _between(WorkOrder.due_at, period),
        )
    ).all()
    now = datetime.now(UTC)
    tally: dict[str, Counter[str]] = {}
    for cid, due, resolved in rows:
        if due is None:  # excluded by the query; keeps the comparisons typed
            continue
        c = tally.setdefault(str(cid), Counter())
        c["due"] += 1
        if resolved is not None and resolved <= due:
            c["on_time"] += 1
        elif resolved is not None or due < now:
            c["late"] += 1
        else:
            c["open"] += 1
    out = []
    for cid in sorted(tally, key=lambda k: (-tally[k]["due"], k)):
        c = tally[cid]
        known = book.get(cid)
        out.append(
            {
                "commitment_id": cid,
                "name": known.name if known else {"zh-CN": cid, "en": cid},
                "due": c["due"],
                "on_time": c["on_time"],
                "late": c["late"],
                "open": c["open"],
                "on_time_rate": _ratio(c["on_time"], c["on_time"] + c["late"]),
            }
        )
    return out


def _between(column: Any, period: Period) -> Any:
    return column.is_not(None) & (column >= period.start()) & (column < period.end())


def work_orders(*, session: Session, principal: Principal, period: Period) -> dict[str, Any]:
    """Count the month's work orders: opened, resolved, on time, breached, escalated, open."""
    scope = scope_filter(principal, WorkOrder.province, WorkOrder.city)

    def month(p: Period) -> dict[str, Any]:
        rows = session.execute(
            select(
                WorkOrder.state,
                WorkOrder.created_at,
                WorkOrder.resolved_at,
                WorkOrder.due_at,
                WorkOrder.breached_at,
                WorkOrder.escalated_at,
            ).where(
                scope,
                (_between(WorkOrder.created_at, p))
                | (_between(WorkOrder.resolved_at, p))
                | (_between(WorkOrder.due_at, p))
                | ((WorkOrder.created_at < p.end()) & (WorkOrder.resolved_at.is_(None))),
            )
        ).all()
        start, end = p.start(), p.end()

        def inside(at: datetime | None) -> bool:
            return at is not None and start <= at < end

        opened = [r for r in rows if inside(r.created_at)]
        resolved = [r for r in rows if inside(r.resolved_at)]
        due = [
            r for r in rows if inside(r.due_at) or (inside(r.resolved_at) and r.due_at is not None)
        ]
        on_time = [r for r in due if r.resolved_at is not None and r.resolved_at <= r.due_at]
        still_open = [
            r
            for r in rows
            if r.created_at < end and (r.resolved_at is None or r.resolved_at >= end)
        ]
        return {
            "opened": len(opened),
            "resolved": len(resolved),
            "due": len(due),
            "on_time": len(on_time),
            "on_time_rate": _ratio(len(on_time), len(due)),
            "breached": sum(1 for r in rows if inside(r.breached_at)),
            "escalated": sum(1 for r in rows if inside(r.escalated_at)),
            "open_at_end": len(still_open),
            "states": dict(Counter(r.state for r in opened).most_common()),
        }

    return {"current": month(period), "previous": month(period.previous())}


def verification(*, session: Session, principal: Principal, period: Period) -> dict[str, Any]:
    """Count the month's verification answers, verified fixes and regressions."""
    scope = scope_filter(principal, WorkOrder.province, WorkOrder.city)
    answers = session.execute(
        select(VerificationTask.kind, VerificationTask.satisfied)
        .join(WorkOrder, WorkOrder.id == VerificationTask.order_id)
        .where(
            scope,
            VerificationTask.state == "answered",
            _between(VerificationTask.answered_at, period),
        )
    ).all()
    verified = session.execute(
        select(WorkOrder.id).where(scope, _between(WorkOrder.verified_at, period))
    ).all()
    regressed = session.execute(
        select(WorkOrder.id, WorkOrder.title, WorkOrder.source_kind, WorkOrder.state).where(
            scope, WorkOrder.regressed.is_(True), _between(WorkOrder.reopened_at, period)
        )
    ).all()
    satisfied = sum(1 for a in answers if a.satisfied)
    return {
        "answers": len(answers),
        "satisfied": satisfied,
        "unsatisfied": len(answers) - satisfied,
        "satisfied_rate": _ratio(satisfied, len(answers)),
        "by_kind": dict(Counter(str(a.kind) for a in answers).most_common()),
        "verified": len(verified),
        "regressed": len(regressed),
        "regressions": [
            {"id": r.id, "title": r.title, "source": r.source_kind, "state": r.state}
            for r in regressed[:10]
        ],
    }


# ---------------------------------------------------------------------------
# Satisfaction analyses (cached by the analyze domain)


def _try(compute: Any) -> tuple[Any, str | None]:
    try:
        return compute(), None
    except VoxloopError as exc:
        return None, str(exc)


def satisfaction(*, settings: Settings, principal: Principal) -> dict[str, Any]:
    """Return the cached key drivers (with short boards) and dissatisfied segments."""
    from voxloop.analyze import views as analyze_views

    drivers, drivers_error = _try(
        lambda: analyze_views.drivers(settings, principal, outcome="overall", touchpoint=None)
    )
    segments, segments_error = _try(
        lambda: analyze_views.segments(
            settings, principal, outcome="dissatisfied", province=None, city=None
        )
    )
    out: dict[str, Any] = {"drivers_error": drivers_error, "segments_error": segments_error}
    if drivers:
        out["n"] = drivers.get("n")
        out["drivers"] = [
            {"driver": d["driver"], "share": d["share"], "performance": d["performance"]}
            for d in drivers["drivers"]
        ]
        out["short_boards"] = list(drivers.get("short_boards", []))
    if segments:
        out["base_rate"] = segments.get("base_rate")
        out["segments_n"] = segments.get("n")
        out["segments"] = [
            {
                "conditions": r["conditions"],
                "rate": r["rate"],
                "lift": r["lift"],
                "coverage": r["coverage"],
                "n": r["n"],
            }
            for r in segments.get("rules", [])[:5]
        ]
        out["drill_down"] = [
            {"value": r["value"], "rate": r["rate"], "n": r["n"], "level": r["level"]}
            for r in segments.get("drill_down", [])[:12]
        ]
    return out


def churn(*, settings: Settings, principal: Principal) -> dict[str, Any]:
    """Return churn-risk figures: the cached national ranking, cut to the region.

    A regional report gets counts and reasons of its own region's customers only, never
    pseudonyms: the analyze domain keeps customer-level churn results national.
    """
    from voxloop.analyze import service as analyze_service

    result, error = _try(
        lambda: analyze_service.cached(
            settings=settings,
            name="churn",
            params={},
            compute=lambda: analyze_service.churn_analysis(settings=settings, limit=1000),
        )
    )
    if result is None:
        return {"error": error}
    ranked: list[dict[str, Any]] = result["at_risk"]
    if principal.province is not None:
        mine = _region_customers(settings, principal, [c["id"] for c in ranked])
        ranked = [c for c in ranked if c["id"] in mine]
    risky = [c for c in ranked if c["risk"] >= CHURN_RISK_AT]
    reasons: Counter[str] = Counter()
    for c in risky:
        for r in c.get("reasons", []):
            reasons[str(r.get("reason") or r.get("feature") or "?")] += 1
    out: dict[str, Any] = {
        "error": None,
        "customers": result["customers"],
        "churned": result["churned"],
        "roc_auc": result["validation"].get("roc_auc"),
        "ranked": len(ranked),
        "at_risk": len(risky),
        "threshold": CHURN_RISK_AT,
        "reasons": dict(reasons.most_common(8)),
        "national": principal.province is None,
    }
    if principal.province is None:
        out["top"] = [
            {"id": c["id"], "risk": c["risk"], "reasons": [r.get("reason") for r in c["reasons"]]}
            for c in ranked[:TOP_CHURN]
        ]
    return out


def _region_customers(settings: Settings, principal: Principal, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    con = lake_connection(settings, ("customers",))
    try:
        tables = {
            str(r[0])
            for r in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
        }
        if "customers" not in tables:
            return set()
        con.execute("CREATE TEMP TABLE wanted (id VARCHAR)")
        con.executemany("INSERT INTO wanted VALUES (?)", [[i] for i in ids])
        where, params = "province = ?", [principal.province]
        if principal.city is not None:
            where += " AND city = ?"
            params.append(principal.city)
        rows = con.execute(
            f"SELECT DISTINCT id FROM customers WHERE id IN (SELECT id FROM wanted) AND {where}",
            params,
        ).fetchall()
        return {str(r[0]) for r in rows}
    finally:
        con.close()


# ---------------------------------------------------------------------------


def gather(
    *, settings: Settings, session: Session, period: Period, region: str | None
) -> dict[str, Any]:
    """Gather every section's facts of the report for ``period`` and ``region``."""
    principal = region_principal(region)
    return {
        "period": period.key,
        "previous": period.previous().key,
        "days": period.days(),
        "region": region_key(principal),
        "timezone": settings.timezone,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "volumes": volumes(settings=settings, principal=principal, period=period),
        "complaints": complaint_kpis(settings=settings, principal=principal, period=period),
        "surges": surges(settings=settings, session=session, principal=principal, period=period)[
            :TOP_SURGES
        ],
        "problems": problems(
            settings=settings, session=session, principal=principal, period=period
        ),
        "commitments": commitments(
            settings=settings, principal=principal, period=period, session=session
        ),
        "satisfaction": satisfaction(settings=settings, principal=principal),
        "churn": churn(settings=settings, principal=principal),
        "work_orders": work_orders(session=session, principal=principal, period=period),
        "verification": verification(session=session, principal=principal, period=period),
    }


def available_periods(*, settings: Settings) -> list[str]:
    """Return the months (``YYYY-MM``, newest first) that have voices in the lake."""
    con = lake_connection(settings, ("voices",))
    try:
        tables = {
            str(r[0])
            for r in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
        }
        if "voices" not in tables:
            return []
        rows = con.execute(
            "SELECT DISTINCT strftime(date_trunc('month', timezone(?, received_at)), '%Y-%m') "
            "FROM voices ORDER BY 1 DESC",
            [settings.timezone],
        ).fetchall()
        return [str(r[0]) for r in rows]
    finally:
        con.close()


def dumps(facts: dict[str, Any]) -> str:
    """Serialise facts as JSON (what the typst template and the archive read)."""
    return json.dumps(facts, ensure_ascii=False, default=str)
