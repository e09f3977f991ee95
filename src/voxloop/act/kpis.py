"""Operations KPIs from the lake (voices, readings, customers) and the work orders.

Formulas are documented in ``docs/kpis.md`` (domain reference §8).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voxloop.act import states
from voxloop.act.access import Principal, scope_filter
from voxloop.act.models import VerificationTask, WorkOrder

ESCALATION_CHANNELS = ("supervision_10080", "regulator_12300", "consumer_12315", "media")
CONTACT_KINDS = ("complaint", "call_transcript", "chat", "ticket")
REPEAT_DAYS = 30
FCR_DAYS = 7


def _views(con: Any) -> set[str]:
    return {
        row[0]
        for row in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal "
            "UNION SELECT table_name FROM duckdb_tables()"
        ).fetchall()
    }


def _scope_sql(principal: Principal | None, alias: str = "v") -> str:
    if principal is None or principal.province is None:
        return "TRUE"
    cond = f"{alias}.province = '{_quote(principal.province)}'"
    if principal.city is not None:
        cond += f" AND {alias}.city = '{_quote(principal.city)}'"
    return cond


def _quote(value: str) -> str:
    return value.replace("'", "''")


def _voices_sql(con: Any, principal: Principal | None) -> str:
    """Deduplicated voices with their scenario (latest reading, else attributes.scenario)."""
    views = _views(con)
    if "readings" in views:
        scenario = "coalesce(r.scenario, v.attributes['scenario'])"
        join = """LEFT JOIN (
            SELECT voice_id, arg_max(scenario, read_at) AS scenario FROM readings GROUP BY voice_id
        ) r ON r.voice_id = v.id"""
    else:
        scenario, join = "v.attributes['scenario']", ""
    return f"""
        SELECT v.id, v.customer_id, v.kind, v.channel, v.received_at, v.province, v.city,
               {scenario} AS scenario
        FROM (SELECT * FROM voices QUALIFY row_number() OVER (PARTITION BY id) = 1) v {join}
        WHERE {_scope_sql(principal)}"""


def lake_kpis(con: Any, *, principal: Principal | None = None) -> dict[str, Any]:
    """Compute the voice-based KPIs (complaints per 10k, repeat, escalation, FCR) per month."""
    views = _views(con)
    if "voices" not in views:
        return {"months": [], "totals": {}}
    con.execute("SET TimeZone = 'UTC'").fetchall()
    kinds = ", ".join(f"'{k}'" for k in CONTACT_KINDS)
    escal = ", ".join(f"'{c}'" for c in ESCALATION_CHANNELS)
    customers_cte = (
        f"""customers_now AS (
            SELECT * FROM customers v WHERE {_scope_sql(principal)}
            QUALIFY row_number() OVER (PARTITION BY id ORDER BY ingested_at DESC) = 1)"""
        if "customers" in views
        else "customers_now AS (SELECT NULL::VARCHAR AS id, NULL::VARCHAR AS status, "
        "NULL::TIMESTAMPTZ AS churned_at WHERE FALSE)"
    )
    sql = f"""
    WITH v AS ({_voices_sql(con, principal)}),
    complaints AS (
        SELECT *, date_trunc('month', CAST(received_at AS TIMESTAMP) + INTERVAL 8 HOUR)::DATE
                  AS month,
               lag(received_at) OVER (PARTITION BY customer_id, scenario ORDER BY received_at)
                  AS prev_at
        FROM v WHERE kind = 'complaint' OR channel IN ({escal})),
    contacts AS (
        SELECT *,
          date_trunc('month', CAST(received_at AS TIMESTAMP) + INTERVAL 8 HOUR)::DATE AS month,
          lag(received_at) OVER w AS prev_at, lead(received_at) OVER w AS next_at
        FROM v WHERE customer_id IS NOT NULL AND kind IN ({kinds})
        WINDOW w AS (PARTITION BY customer_id, scenario ORDER BY received_at)),
    data_end AS (SELECT max(received_at) AS t FROM v),
    {customers_cte},
    months AS (SELECT DISTINCT month FROM complaints UNION SELECT DISTINCT month FROM contacts),
    active AS (
        SELECT m.month, count(c.id) AS customers FROM months m LEFT JOIN customers_now c
          ON c.status = 'active' OR c.churned_at >= (m.month::TIMESTAMP - INTERVAL 8 HOUR)
        GROUP BY m.month),
    cm AS (
        SELECT month, count(*) AS complaints,
          count(*) FILTER (WHERE customer_id IS NOT NULL AND scenario IS NOT NULL
                           AND prev_at >= received_at - INTERVAL {REPEAT_DAYS} DAY) AS repeats,
          count(*) FILTER (WHERE channel IN ({escal})) AS escalated
        FROM complaints GROUP BY month),
    fm AS (
        SELECT month,
          count(*) FILTER (WHERE (prev_at IS NULL
                                  OR prev_at < received_at - INTERVAL {FCR_DAYS} DAY)
                           AND received_at + INTERVAL {FCR_DAYS} DAY <= (SELECT t FROM data_end))
            AS first_contacts,
          count(*) FILTER (WHERE (prev_at IS NULL
                                  OR prev_at < received_at - INTERVAL {FCR_DAYS} DAY)
                           AND received_at + INTERVAL {FCR_DAYS} DAY <= (SELECT t FROM data_end)
                           AND (next_at IS NULL
                                OR next_at > received_at + INTERVAL {FCR_DAYS} DAY))
            AS resolved_first
        FROM contacts GROUP BY month)
    SELECT m.month, coalesce(cm.complaints, 0), coalesce(cm.repeats, 0),
           coalesce(cm.escalated, 0), a.customers, coalesce(fm.first_contacts, 0),
           coalesce(fm.resolved_first, 0)
    FROM months m LEFT JOIN cm USING (month) LEFT JOIN fm USING (month)
    LEFT JOIN active a USING (month) ORDER BY m.month
    """
    rows = con.execute(sql).fetchall()
    months = []
    tot = {"complaints": 0, "repeats": 0, "escalated": 0, "first_contacts": 0, "fcr": 0}
    for month, complaints, repeats, escalated, customers, first, resolved in rows:
        months.append(
            {
                "month": str(month),
                "complaints": int(complaints),
                "active_customers": int(customers or 0),
                "complaints_per_10k": _ratio(complaints * 10_000, customers),
                "repeat_complaint_rate": _ratio(repeats, complaints),
                "escalation_rate": _ratio(escalated, complaints),
                "first_contact_resolution": _ratio(resolved, first),
            }
        )
        tot["complaints"] += int(complaints)
        tot["repeats"] += int(repeats)
        tot["escalated"] += int(escalated)
        tot["first_contacts"] += int(first)
        tot["fcr"] += int(resolved)
    totals: dict[str, Any] = {
        "complaints": tot["complaints"],
        "repeat_complaint_rate": _ratio(tot["repeats"], tot["complaints"]),
        "escalation_rate": _ratio(tot["escalated"], tot["complaints"]),
        "first_contact_resolution": _ratio(tot["fcr"], tot["first_contacts"]),
    }
    by_channel = con.execute(
        f"""
        WITH v AS ({_voices_sql(con, principal)})
        SELECT channel, count(*) FROM v
        WHERE channel IN ({escal}) GROUP BY channel ORDER BY channel
        """
    ).fetchall()
    totals["escalation_rate_by_channel"] = {
        str(channel): _ratio(n, tot["complaints"]) for channel, n in by_channel
    }
    return {"months": months, "totals": totals}


def _ratio(num: float, den: float | None) -> float | None:
    return float(num) / float(den) if den else None


def order_kpis(
    *, session: Session, principal: Principal, at: datetime | None = None
) -> dict[str, Any]:
    """Compute on-time handling, closure and post-resolution satisfaction from work orders."""
    at = at or datetime.now(UTC)
    scope = scope_filter(principal, WorkOrder.province, WorkOrder.city)
    done = WorkOrder.state.in_(states.DONE_STATES)
    total = session.scalar(select(func.count()).select_from(WorkOrder).where(scope)) or 0
    closed = session.scalar(select(func.count()).select_from(WorkOrder).where(scope, done)) or 0
    due = (
        session.scalar(
            select(func.count())
            .select_from(WorkOrder)
            .where(
                scope,
                WorkOrder.due_at.is_not(None),
                (WorkOrder.resolved_at.is_not(None)) | (WorkOrder.due_at <= at),
            )
        )
        or 0
    )
    on_time = (
        session.scalar(
            select(func.count())
            .select_from(WorkOrder)
            .where(
                scope,
                WorkOrder.due_at.is_not(None),
                WorkOrder.resolved_at.is_not(None),
                WorkOrder.resolved_at <= WorkOrder.due_at,
            )
        )
        or 0
    )
    answers = session.execute(
        select(func.count(), func.sum(func.cast(VerificationTask.satisfied, _int_type())))
        .join(WorkOrder, WorkOrder.id == VerificationTask.order_id)
        .where(scope, VerificationTask.state == "answered")
    ).one()
    regressed = (
        session.scalar(
            select(func.count()).select_from(WorkOrder).where(scope, WorkOrder.regressed.is_(True))
        )
        or 0
    )
    return {
        "orders": int(total),
        "on_time_handling_rate": _ratio(on_time, due),
        "orders_due": int(due),
        "closure_rate": _ratio(closed, total),
        "post_resolution_satisfaction": _ratio(int(answers[1] or 0), int(answers[0] or 0)),
        "verification_answers": int(answers[0] or 0),
        "regressed_orders": int(regressed),
    }


def _int_type() -> Any:
    from sqlalchemy import Integer

    return Integer()
