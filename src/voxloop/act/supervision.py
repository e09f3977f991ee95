"""Commitment supervision over journey events: one vectorised DuckDB query per rule.

Rules (domain reference §7; event names from the shared contract):

* R4  ``usage_over_plan`` -> ``overage_reminder_sent`` within T (C2, default 24 h [P])
* R6  ``plan_change_requested`` -> ``plan_change_done`` within 48 h, or within 48 h after
  ``attributes.contract_end`` when the request falls inside a contract (C3)
* R7  eligible ``unsubscribe_requested`` at 10086 or a store -> ``unsubscribe_done`` in the
  same interaction (``attributes.interaction_id``) (C4)
* R8  eligible ``broadband_cancel_requested`` -> ``broadband_cancel_done`` the same local day (C4)
* R13 ``complaint_opened`` -> ``complaint_first_response`` within 48 h (internal SLA) and
  ``complaint_replied`` within 15 days (legal ceiling, MIIT Order 35) (C9)

A response is linked to its request by ``attributes.request_id``; responses without one are
linked to the same customer's earliest later response.  Data sets end mid-journey: a request
whose deadline is after the last event and that has no response yet is *pending*, never a
violation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from voxloop.act.commitments import CommitmentBook, load_commitments

RULE_IDS = ("R4", "R6", "R7", "R8", "R13")
SAME_INTERACTION_GRACE_HOURS = 1.0
LOCAL_OFFSET_HOURS = 8  # Asia/Shanghai has had no daylight saving time since 1991.

CHECK_SCHEMA = pa.schema(
    [
        pa.field("rule", pa.string()),
        pa.field("commitment_id", pa.string()),
        pa.field("request_event_id", pa.string()),
        pa.field("customer_id", pa.string()),
        pa.field("requested_at", pa.timestamp("us", tz="UTC")),
        pa.field("deadline", pa.timestamp("us", tz="UTC")),
        pa.field("done_at", pa.timestamp("us", tz="UTC")),
        pa.field("status", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("event_ids", pa.list_(pa.string())),
        pa.field("province", pa.string()),
        pa.field("city", pa.string()),
        pa.field("district", pa.string()),
    ]
)

#: Scenario of the work order opened for a violation of each rule.
RULE_SCENARIO = {"R4": "USAGE", "R6": "PLAN", "R7": "UNSUB", "R8": "UNSUB", "R13": "CMPL"}


@dataclass(frozen=True)
class RuleInfo:
    """What a supervision rule checks and which commitment it enforces."""

    rule: str
    commitment_id: str
    name_zh: str
    name_en: str


RULES: dict[str, RuleInfo] = {
    "R4": RuleInfo("R4", "C2-overage-reminder", "超套未及时提醒", "Overage reminder sent"),
    "R6": RuleInfo("R6", "C3-plan-change", "套餐变更48小时办结", "Plan change within 48 h"),
    "R7": RuleInfo("R7", "C4-unsubscribe", "退订当场办结", "Unsubscribe in the same interaction"),
    "R8": RuleInfo("R8", "C4-broadband-cancel", "宽带退订当日办结", "Broadband cancel same day"),
    "R13": RuleInfo(
        "R13",
        "C9-complaint-first-response",
        "投诉48小时响应/15日答复",
        "Complaint response 48 h / reply 15 d",
    ),
}


def _hours(book: CommitmentBook, commitment_id: str, fallback: float) -> float:
    commitment = book.get(commitment_id)
    return commitment.hours if commitment else fallback


def _responses(kind: str) -> str:
    """SQL for the first response of type ``kind`` per request (by request_id or customer)."""
    return f"""
    linked_{kind} AS (
        SELECT r.id AS req_id, d.id AS done_id, d.occurred_at AS done_at,
               d.attributes['interaction_id'] AS done_interaction
        FROM req r JOIN ev d
          ON d.type = '{kind}' AND d.attributes['request_id'] = r.link_key
        UNION ALL
        SELECT r.id, d.id, d.occurred_at, d.attributes['interaction_id']
        FROM req r JOIN ev d
          ON d.type = '{kind}' AND d.attributes['request_id'] IS NULL
         AND d.customer_id = r.customer_id AND d.occurred_at >= r.occurred_at
    ),
    first_{kind} AS (
        SELECT req_id, min(done_at) AS done_at, list(done_id ORDER BY done_at) AS done_ids,
               list(done_interaction) AS interactions
        FROM linked_{kind} GROUP BY req_id
    )"""


# Duplicate event rows (re-ingested files) must not double-count a request.
_EV = "ev AS (SELECT * FROM events QUALIFY row_number() OVER (PARTITION BY id) = 1)"
# Request and response share ``attributes.request_id``; a request without one is referred to
# by its own event id.
_REQ = "SELECT *, coalesce(attributes['request_id'], id) AS link_key FROM ev"


def _status(deadline: str, done: str) -> str:
    return f"""CASE WHEN {done} IS NOT NULL AND {done} <= {deadline} THEN 'ok'
                  WHEN {done} IS NOT NULL THEN 'violation'
                  WHEN {deadline} <= $data_end::TIMESTAMPTZ THEN 'violation'
                  ELSE 'pending' END"""


def _rule_sql(rule: str, book: CommitmentBook) -> str:
    local = f"INTERVAL {LOCAL_OFFSET_HOURS} HOUR"
    if rule == "R4":
        hours = _hours(book, "C2-overage-reminder", 24)
        deadline = f"r.occurred_at + INTERVAL {hours * 3600:.0f} SECOND"
        return f"""
        WITH {_EV}, req AS ({_REQ} WHERE type = 'usage_over_plan'),
        {_responses("overage_reminder_sent")}
        SELECT r.id, r.customer_id, r.occurred_at, {deadline} AS deadline, f.done_at,
               {_status(deadline, "f.done_at")} AS status,
               'no overage reminder within {hours:g} h' AS reason,
               list_concat([r.id], coalesce(f.done_ids, [])) AS event_ids,
               r.province, r.city, r.district
        FROM req r LEFT JOIN first_overage_reminder_sent f ON f.req_id = r.id"""
    if rule == "R6":
        hours = _hours(book, "C3-plan-change", 48)
        # contract_end is an ISO date (local) or timestamp; the 48 h clock starts when the
        # contract ends if that is after the request.
        x = "r.attributes['contract_end']"
        # Dates and naive timestamps are Asia/Shanghai local time (shared contract).
        contract = f"""CASE
            WHEN {x} IS NULL OR {x} = '' THEN NULL
            WHEN length({x}) <= 10
              THEN (try_cast(try_cast({x} AS DATE) AS TIMESTAMP) - {local})::TIMESTAMPTZ
            WHEN regexp_matches(substr({x}, 11), '(Z|[+-][0-9][0-9]:?[0-9][0-9])$')
              THEN try_cast({x} AS TIMESTAMPTZ)
            ELSE (try_cast({x} AS TIMESTAMP) - {local})::TIMESTAMPTZ END"""
        seconds = f"INTERVAL {hours * 3600:.0f} SECOND"
        deadline = f"greatest(r.occurred_at, coalesce({contract}, r.occurred_at)) + {seconds}"
        return f"""
        WITH {_EV}, req AS ({_REQ} WHERE type = 'plan_change_requested'),
        {_responses("plan_change_done")}
        SELECT r.id, r.customer_id, r.occurred_at, {deadline} AS deadline, f.done_at,
               {_status(deadline, "f.done_at")} AS status,
               'plan change not done within {hours:g} h (of request or contract end)' AS reason,
               list_concat([r.id], coalesce(f.done_ids, [])) AS event_ids,
               r.province, r.city, r.district
        FROM req r LEFT JOIN first_plan_change_done f ON f.req_id = r.id"""
    if rule == "R7":
        grace = f"INTERVAL {SAME_INTERACTION_GRACE_HOURS * 3600:.0f} SECOND"
        return f"""
        WITH {_EV}, req AS (
            {_REQ}
            WHERE type = 'unsubscribe_requested'
              AND channel IN ('hotline_10086', 'store')
              AND coalesce(lower(attributes['eligible']), 'true') <> 'false'),
        {_responses("unsubscribe_done")}
        SELECT r.id, r.customer_id, r.occurred_at, r.occurred_at + {grace} AS deadline,
               f.done_at,
               CASE
                 WHEN f.done_at IS NOT NULL AND (
                      r.attributes['interaction_id'] IS NULL
                        AND f.done_at <= r.occurred_at + {grace}
                      OR list_contains(f.interactions, r.attributes['interaction_id']))
                   THEN 'ok'
                 WHEN f.done_at IS NOT NULL THEN 'violation'
                 WHEN r.occurred_at + {grace} <= $data_end::TIMESTAMPTZ THEN 'violation'
                 ELSE 'pending' END AS status,
               'eligible unsubscribe not closed in the same interaction' AS reason,
               list_concat([r.id], coalesce(f.done_ids, [])) AS event_ids,
               r.province, r.city, r.district
        FROM req r LEFT JOIN first_unsubscribe_done f ON f.req_id = r.id"""
    if rule == "R8":
        # End of the request's local calendar day, expressed in UTC.
        deadline = (
            f"(CAST(CAST(r.occurred_at AS TIMESTAMP) + {local} AS DATE) + INTERVAL 1 DAY "
            f"- {local})::TIMESTAMPTZ"
        )
        return f"""
        WITH {_EV}, req AS (
            {_REQ}
            WHERE type = 'broadband_cancel_requested'
              AND coalesce(lower(attributes['eligible']), 'true') <> 'false'),
        {_responses("broadband_cancel_done")}
        SELECT r.id, r.customer_id, r.occurred_at, {deadline} AS deadline, f.done_at,
               {_status(deadline, "f.done_at")} AS status,
               'eligible broadband cancellation not done the same day' AS reason,
               list_concat([r.id], coalesce(f.done_ids, [])) AS event_ids,
               r.province, r.city, r.district
        FROM req r LEFT JOIN first_broadband_cancel_done f ON f.req_id = r.id"""
    if rule == "R13":
        first = _hours(book, "C9-complaint-first-response", 48)
        reply = _hours(book, "C9-complaint-reply", 360)
        d1 = f"r.occurred_at + INTERVAL {first * 3600:.0f} SECOND"
        d2 = f"r.occurred_at + INTERVAL {reply * 3600:.0f} SECOND"
        s1 = _status(d1, "f1.done_at")
        s2 = _status(d2, "f2.done_at")
        return f"""
        WITH {_EV}, req AS ({_REQ} WHERE type = 'complaint_opened'),
        {_responses("complaint_first_response")},
        {_responses("complaint_replied")}
        SELECT r.id, r.customer_id, r.occurred_at,
               CASE WHEN ({s1}) = 'violation' OR ({s2}) <> 'violation' THEN {d1} ELSE {d2} END
                 AS deadline,
               CASE WHEN ({s1}) = 'violation' THEN f1.done_at ELSE f2.done_at END AS done_at,
               CASE WHEN ({s1}) = 'violation' OR ({s2}) = 'violation' THEN 'violation'
                    WHEN ({s1}) = 'pending' OR ({s2}) = 'pending' THEN 'pending'
                    ELSE 'ok' END AS status,
               CASE WHEN ({s1}) = 'violation' AND ({s2}) = 'violation'
                      THEN 'no first response within {first:g} h and no reply within {reply:g} h'
                    WHEN ({s1}) = 'violation' THEN 'no first response within {first:g} h'
                    ELSE 'no reply within {reply / 24:g} days' END AS reason,
               list_concat([r.id], coalesce(f1.done_ids, []), coalesce(f2.done_ids, []))
                 AS event_ids,
               r.province, r.city, r.district
        FROM req r
        LEFT JOIN first_complaint_first_response f1 ON f1.req_id = r.id
        LEFT JOIN first_complaint_replied f2 ON f2.req_id = r.id"""
    raise ValueError(f"unknown supervision rule {rule!r}; known: {', '.join(RULE_IDS)}")


def check_events(
    con: Any,
    *,
    rules: tuple[str, ...] = RULE_IDS,
    data_end: datetime | None = None,
    book: CommitmentBook | None = None,
) -> pa.Table:
    """Check every request event against its rule; one row per (rule, request) with a status.

    ``con`` is a DuckDB connection with an ``events`` view (lake schema).  ``data_end``
    defaults to the last event's time.
    """
    book = book or load_commitments()
    has_events = con.execute(
        "SELECT count(*) FROM duckdb_views() WHERE view_name = 'events' "
        "UNION ALL SELECT count(*) FROM duckdb_tables() WHERE table_name = 'events'"
    ).fetchall()
    has_events = any(n for (n,) in has_events)
    if not has_events:
        return CHECK_SCHEMA.empty_table()
    # Local-time arithmetic below adds the fixed offset to UTC values explicitly.
    con.execute("SET TimeZone = 'UTC'").fetchall()
    if data_end is None:
        # Epoch microseconds avoid DuckDB's pytz dependency for zoned Python datetimes.
        ((end_us,),) = con.execute("SELECT epoch_us(max(occurred_at)) FROM events").fetchall()
        if end_us is None:
            return CHECK_SCHEMA.empty_table()
        data_end = datetime.fromtimestamp(end_us / 1e6, tz=UTC)
    parts = []
    for rule in rules:
        sql = _rule_sql(rule, book)
        table = con.sql(sql, params={"data_end": data_end.isoformat()}).to_arrow_table()
        n = table.num_rows
        parts.append(
            pa.table(
                {
                    "rule": pa.array([rule] * n, pa.string()),
                    "commitment_id": pa.array([RULES[rule].commitment_id] * n, pa.string()),
                    "request_event_id": table.column(0).cast(pa.string()),
                    "customer_id": table.column(1).cast(pa.string()),
                    "requested_at": table.column(2).cast(pa.timestamp("us", tz="UTC")),
                    "deadline": table.column(3).cast(pa.timestamp("us", tz="UTC")),
                    "done_at": table.column(4).cast(pa.timestamp("us", tz="UTC")),
                    "status": table.column(5).cast(pa.string()),
                    "reason": table.column(6).cast(pa.string()),
                    "event_ids": table.column(7).cast(pa.list_(pa.string())),
                    "province": table.column(8).cast(pa.string()),
                    "city": table.column(9).cast(pa.string()),
                    "district": table.column(10).cast(pa.string()),
                },
                schema=CHECK_SCHEMA,
            )
        )
    return pa.concat_tables(parts) if parts else CHECK_SCHEMA.empty_table()


def compliance(checks: pa.Table, con: Any | None = None) -> list[dict[str, Any]]:
    """Summarise checks per rule: checked, ok, violations, pending and compliance rate."""
    import duckdb

    db = con or duckdb.connect(":memory:")
    db.register("checks_view", checks)
    rows = db.execute(
        """
        SELECT rule, count(*) FILTER (WHERE status <> 'pending') AS checked,
               count(*) FILTER (WHERE status = 'ok') AS ok,
               count(*) FILTER (WHERE status = 'violation') AS violations,
               count(*) FILTER (WHERE status = 'pending') AS pending
        FROM checks_view GROUP BY rule ORDER BY rule
        """
    ).fetchall()
    db.unregister("checks_view")
    out = []
    for rule, checked, ok, violations, pending in rows:
        info = RULES[rule]
        out.append(
            {
                "rule": rule,
                "commitment_id": info.commitment_id,
                "name": {"zh-CN": info.name_zh, "en": info.name_en},
                "checked": int(checked),
                "ok": int(ok),
                "violations": int(violations),
                "pending": int(pending),
                "compliance_rate": (ok / checked) if checked else None,
            }
        )
    return out


def trend(checks: pa.Table, *, period: str = "week") -> list[dict[str, Any]]:
    """Compliance rate per rule and period (``day``/``week``/``month``, local time)."""
    import duckdb

    if period not in ("day", "week", "month"):
        raise ValueError(f"period {period!r}: expected day, week or month")
    db = duckdb.connect(":memory:")
    db.register("checks_view", checks)
    rows = db.execute(
        f"""
        SELECT rule,
               date_trunc('{period}', CAST(requested_at AS TIMESTAMP)
                          + INTERVAL {LOCAL_OFFSET_HOURS} HOUR)::DATE AS period,
               count(*) FILTER (WHERE status <> 'pending') AS checked,
               count(*) FILTER (WHERE status = 'ok') AS ok
        FROM checks_view GROUP BY ALL ORDER BY rule, period
        """
    ).fetchall()
    return [
        {
            "rule": rule,
            "period": str(start),
            "checked": int(checked),
            "ok": int(ok),
            "compliance_rate": (ok / checked) if checked else None,
        }
        for rule, start, checked, ok in rows
    ]


def violations(checks: pa.Table) -> list[dict[str, Any]]:
    """Return the violation rows as dicts (rule, customer, events, deadline, reason)."""
    import pyarrow.compute as pc

    rows = checks.filter(pc.equal(checks.column("status"), "violation")).to_pylist()
    return [
        {
            "rule": r["rule"],
            "commitment_id": r["commitment_id"],
            "customer_id": r["customer_id"],
            "event_ids": r["event_ids"],
            "requested_at": r["requested_at"],
            "deadline": r["deadline"],
            "done_at": r["done_at"],
            "reason": r["reason"],
            "province": r["province"],
            "city": r["city"],
            "district": r["district"],
        }
        for r in rows
    ]


def compare_with_truth(
    checks: pa.Table, truth: list[dict[str, Any]], *, key: str, rules: tuple[str, ...] = RULE_IDS
) -> dict[str, Any]:
    """Score found violations against planted ones (raw ids pseudonymised with ``key``).

    A violation matches when rule, customer pseudonym and request event agree.  Returns
    per-rule and overall planted / found / true positives / false positives / missed.
    """
    from voxloop.ingest.service import pseudonymise

    planted_rows = [t for t in truth if t["rule"] in rules]
    pseudo = pseudonymise(key=key, ids=pa.array([t["customer_id"] for t in planted_rows]))
    planted = {
        (t["rule"], p, t["event_ids"][0])
        for t, p in zip(planted_rows, pseudo.to_pylist(), strict=True)
    }
    found = {
        (v["rule"], v["customer_id"], v["event_ids"][0])
        for v in violations(checks)
        if v["rule"] in rules
    }
    out: dict[str, Any] = {}
    for rule in (*rules, "all"):
        p = {x for x in planted if rule in ("all", x[0])}
        f = {x for x in found if rule in ("all", x[0])}
        out[rule] = {
            "planted": len(p),
            "found": len(f),
            "true_positives": len(p & f),
            "false_positives": len(f - p),
            "missed": len(p - f),
        }
    return out
