"""Store-backed analyses (lake → drivers, segments, journeys, churn) and their text form."""

from __future__ import annotations

import threading
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from voxloop.analyze.churn import ChurnModel
from voxloop.analyze.drivers import KeyDriverModel
from voxloop.analyze.journeys import anchors_from_surveys, before_anchor, contrast
from voxloop.analyze.segments import SegmentFinder, drill_down, rule_mask
from voxloop.config import Settings
from voxloop.errors import NotFoundError, UnusableInputError, VoxloopError


def format_text(result: dict[str, Any]) -> str:
    """Render an analysis or evaluation result as aligned ``key: value`` lines."""
    lines = []
    for key, value in result.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{key}:")
            lines.extend(f"  {_row(item)}" for item in value)
        elif isinstance(value, float):
            lines.append(f"{key:>24}: {value:.4f}")
        else:
            lines.append(f"{key:>24}: {value}")
    return "\n".join(lines)


def _row(item: dict[str, Any]) -> str:
    parts = []
    for key, value in item.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        elif isinstance(value, list | dict):
            continue
        else:
            parts.append(f"{key}={value}")
    return "  ".join(parts)


# ---------------------------------------------------------------------------
# Data sets from the lake

#: Customer profile columns joined to survey responses and used as segment attributes.
PROFILE_COLUMNS = (
    "plan_name",
    "plan_is_5g",
    "plan_data_gb",
    "plan_monthly_fee",
    "tenure_months",
    "arpu",
    "segment",
)
REGION_LEVELS = ["province", "city", "district"]
#: Overall scores at or below this are "dissatisfied" (1-6 / 7-8 / 9-10 buckets).
DISSATISFIED_AT_MOST = 6.0
#: Event types that are the churn itself: never features of a churn model.
CHURN_EVENTS = ("port_out_requested", "account_closed")


def _tables(con: Any) -> set[str]:
    rows = con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    return {str(r[0]) for r in rows}


def _latest_customers_sql() -> str:
    # Re-ingested profiles add versions; the newest ingest of an id wins.
    return (
        "SELECT * EXCLUDE (rn) FROM (SELECT *, row_number() OVER "
        "(PARTITION BY id ORDER BY ingested_at DESC) AS rn FROM customers) WHERE rn = 1"
    )


def survey_frame(*, settings: Settings) -> tuple[pd.DataFrame, list[str]]:
    """Return survey responses joined with customer profiles, and the factor columns."""
    from voxloop.store.service import lake_connection

    con = lake_connection(settings, ("surveys", "customers"))
    tables = _tables(con)
    if "surveys" not in tables:
        raise NotFoundError("the lake holds no survey responses; ingest surveys first")
    names = [
        str(r[0])
        for r in con.execute(
            "SELECT DISTINCT unnest(map_keys(factors)) AS k FROM surveys ORDER BY k"
        ).fetchall()
        if r[0] is not None
    ]
    factor_sql = "".join(
        f", map_extract(s.factors, '{n.replace(chr(39), chr(39) * 2)}')[1] AS \"{n}\""
        for n in names
    )
    if "customers" in tables:
        profile = "".join(f", c.{c}" for c in PROFILE_COLUMNS)
        sql = (
            f"WITH c AS ({_latest_customers_sql()}) "
            "SELECT s.id AS survey_id, s.customer_id, s.touchpoint, s.overall, "
            "CAST(s.nps AS DOUBLE) AS nps, epoch(s.occurred_at) AS occurred_epoch, "
            "CAST(timezone($tz, s.occurred_at) AS DATE) AS local_day, "
            "coalesce(s.province, c.province) AS province, coalesce(s.city, c.city) AS city, "
            f"coalesce(s.district, c.district) AS district{profile}{factor_sql} "
            "FROM surveys s LEFT JOIN c ON s.customer_id = c.id ORDER BY s.id"
        )
    else:
        sql = (
            "SELECT s.id AS survey_id, s.customer_id, s.touchpoint, s.overall, "
            "CAST(s.nps AS DOUBLE) AS nps, epoch(s.occurred_at) AS occurred_epoch, "
            "CAST(timezone($tz, s.occurred_at) AS DATE) AS local_day, "
            f"s.province, s.city, s.district{factor_sql} FROM surveys s ORDER BY s.id"
        )
    # The day in the dashboard's time zone, as the filter bar's dates are meant.
    frame: pd.DataFrame = (
        con.sql(sql, params={"tz": settings.timezone}).to_arrow_table().to_pandas()
    )
    return frame, names


def customer_regions(*, settings: Settings, ids: list[str]) -> dict[str, dict[str, str]]:
    """Return each known customer's province, city and district from their newest profile."""
    from voxloop.store.service import lake_connection

    con = lake_connection(settings, ("customers",))
    if "customers" not in _tables(con) or not ids:
        return {}
    rows = con.execute(
        f"WITH c AS ({_latest_customers_sql()}) "
        "SELECT id, province, city, district FROM c WHERE id IN (SELECT unnest($ids))",
        {"ids": ids},
    ).fetchall()
    return {
        str(r[0]): {k: str(v) for k, v in zip(REGION_LEVELS, r[1:], strict=True) if v} for r in rows
    }


def _outcome(frame: pd.DataFrame, outcome: str) -> np.ndarray:
    if outcome == "overall":
        return frame["overall"].to_numpy(dtype=np.float64)
    if outcome == "nps":
        return frame["nps"].to_numpy(dtype=np.float64)
    if outcome == "dissatisfied":
        return (frame["overall"] <= DISSATISFIED_AT_MOST).to_numpy(dtype=np.float64)
    if outcome == "satisfied":
        return (frame["overall"] > DISSATISFIED_AT_MOST).to_numpy(dtype=np.float64)
    raise UnusableInputError(
        f"outcome must be overall, nps, satisfied or dissatisfied, not {outcome!r}"
    )


def _in_region(frame: pd.DataFrame, region: dict[str, str] | None) -> pd.DataFrame:
    """Keep the responses inside ``region`` ({"province": ..., "city": ...}, all if empty)."""
    if not region:
        return frame
    mask = np.ones(len(frame), dtype=bool)
    for col, value in region.items():
        if col not in REGION_LEVELS:
            raise UnusableInputError(f"region level must be one of {REGION_LEVELS}, not {col!r}")
        mask &= (frame[col].astype("string") == value).fillna(False).to_numpy(dtype=bool)
    return frame[mask].reset_index(drop=True)


def in_scope(
    frame: pd.DataFrame,
    *,
    region: dict[str, str] | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    touchpoint: str | None = None,
) -> pd.DataFrame:
    """Keep the survey responses inside a region, a range of local days and a touchpoint.

    Dates are inclusive calendar days in the dashboard's time zone (``local_day``), as the
    filter bar means them; ``None`` leaves that side open.
    """
    frame = _in_region(frame, region)
    mask = np.ones(len(frame), dtype=bool)
    if (date_from or date_to) and "local_day" in frame.columns:
        days = pd.to_datetime(frame["local_day"]).dt.date
        if date_from is not None:
            mask &= (days >= date_from).fillna(False).to_numpy(dtype=bool)
        if date_to is not None:
            mask &= (days <= date_to).fillna(False).to_numpy(dtype=bool)
    if touchpoint:
        mask &= (
            (frame["touchpoint"].astype("string") == touchpoint).fillna(False).to_numpy(dtype=bool)
        )
    return frame if mask.all() else frame[mask].reset_index(drop=True)


def _period(date_from: date | None, date_to: date | None) -> dict[str, str | None]:
    return {
        "from": date_from.isoformat() if date_from else None,
        "to": date_to.isoformat() if date_to else None,
    }


def _scope_label(
    region: dict[str, str] | None, date_from: date | None, date_to: date | None
) -> str:
    parts = [" ".join((region or {}).values())]
    if date_from or date_to:
        parts.append(f"{date_from or '…'} – {date_to or '…'}")
    return ", ".join(p for p in parts if p) or "the whole lake"


def drivers_analysis(
    *,
    settings: Settings,
    outcome: str = "overall",
    touchpoint: str | None = None,
    n_boot: int = 0,
    top_k: int = 5,
    region: dict[str, str] | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
) -> dict[str, Any]:
    """Run key-driver analysis of an outcome over the survey factor ratings in the lake.

    ``region`` (e.g. ``{"province": "江苏"}``) restricts the analysis to the responses
    of that region, as a regional manager sees it; ``date_from``/``date_to`` (local
    days, inclusive) and ``touchpoint`` restrict it further (see ``in_scope``).
    """
    frame, factors = survey_frame(settings=settings)
    frame = in_scope(
        frame, region=region, date_from=date_from, date_to=date_to, touchpoint=touchpoint
    )
    y = _outcome(frame, outcome)
    keep = np.isfinite(y)
    frame = frame[keep].reset_index(drop=True)
    y = y[keep]
    usable = [f for f in factors if frame[f].notna().sum() >= 30]
    if len(frame) < 30 or not usable:
        raise NotFoundError(
            f"too few survey responses with factor ratings to analyse in "
            f"{_scope_label(region, date_from, date_to)} ({len(frame)}, at least 30 needed)"
        )
    model = KeyDriverModel(missing="pairwise", n_boot=n_boot, top_k=top_k)
    model.fit(frame[usable], y)
    result = model.summary()
    result["outcome"] = outcome
    result["touchpoint"] = touchpoint
    result["region"] = region or {}
    result["period"] = _period(date_from, date_to)
    result["coverage"] = {f: float(frame[f].notna().mean()) for f in usable}
    return result


def segments_analysis(
    *,
    settings: Settings,
    outcome: str = "dissatisfied",
    attributes: list[str] | None = None,
    path: dict[str, str] | None = None,
    max_rules: int = 10,
    region: dict[str, str] | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    touchpoint: str | None = None,
) -> dict[str, Any]:
    """Find segments of respondents over-represented in ``outcome``, plus a region drill-down.

    ``region`` restricts everything (rules, base rate, drill-down) to the responses of
    that region; the drill-down then starts below it. ``date_from``/``date_to`` (local
    days, inclusive) and ``touchpoint`` restrict the responses the same way.
    """
    frame, _factors = survey_frame(settings=settings)
    frame = in_scope(
        frame, region=region, date_from=date_from, date_to=date_to, touchpoint=touchpoint
    )
    if len(frame) == 0:
        raise NotFoundError(
            f"no survey responses in {_scope_label(region, date_from, date_to)}"
            + (f" for touchpoint {touchpoint}" if touchpoint else "")
        )
    path = {**(path or {}), **(region or {})}
    y = _outcome(frame, outcome)
    if not np.isin(y, (0.0, 1.0)).all():
        raise UnusableInputError("segments need a yes/no outcome: dissatisfied or satisfied")
    default = ["touchpoint", *[c for c in PROFILE_COLUMNS if c in frame.columns], "province"]
    # A region (or touchpoint) the analysis is restricted to is constant: no rule can use it.
    fixed = {*(region or {}), *(("touchpoint",) if touchpoint else ())}
    cols = attributes or [c for c in default if c not in fixed]
    unknown = [c for c in cols if c not in frame.columns]
    if unknown:
        raise UnusableInputError(f"attributes not in the survey data: {', '.join(unknown)}")
    finder = SegmentFinder(max_rules=max_rules).fit(frame[cols], y)
    result = finder.summary()
    result["outcome"] = outcome
    levels = [lv for lv in REGION_LEVELS if lv in frame.columns]
    result["drill_down"] = drill_down(frame, y, levels=levels, path=path)
    result["path"] = path
    result["region"] = region or {}
    result["period"] = _period(date_from, date_to)
    result["touchpoint"] = touchpoint
    top = finder.rules_[0] if finder.rules_ else None
    if top is not None:
        result["top_rule_customers"] = int(
            frame.loc[rule_mask(frame, top.conditions), "customer_id"].nunique()
        )
    return result


# ---------------------------------------------------------------------------
# Churn

#: Days between a churner's feature cut-off and the churn: the last days before leaving
#: (port-out request, closing calls) are the churn itself, not a warning of it.
CHURN_GAP_DAYS = 3
#: Channels that mean the customer escalated beyond the operator.
ESCALATION_CHANNELS = ("supervision_10080", "regulator_12300", "consumer_12315", "media")


def churn_frame(
    *, settings: Settings, window_days: int = 30, as_of_fraction: float | None = None
) -> pd.DataFrame:
    """Return one row per customer: profile, voice/survey/event features and churn label.

    By default features of a churner stop ``CHURN_GAP_DAYS`` before the churn and those
    of a customer still active stop at the newest record in the lake.  With
    ``as_of_fraction`` every feature stops at one cut-off (that fraction of the way
    through the lake's time span), customers who left before it are dropped, and the
    label is "churned after the cut-off": a purely time-based design.  Churn events
    themselves (port-out, closure) are never features.
    """
    from voxloop.store.service import lake_connection

    con = lake_connection(
        settings,
        ("customers", "voices", "surveys", "events", "readings", "dialogue_satisfaction"),
    )
    tables = _tables(con)
    if "customers" not in tables:
        raise NotFoundError("the lake holds no customer profiles; ingest customers first")
    ends = [
        f"(SELECT max({col}) FROM {t})"
        for t, col in (
            ("voices", "received_at"),
            ("surveys", "occurred_at"),
            ("events", "occurred_at"),
        )
        if t in tables
    ]
    end_sql = f"greatest({', '.join(ends)})" if ends else "now()"
    gap = f"INTERVAL {CHURN_GAP_DAYS} DAY"
    win = f"INTERVAL {int(window_days)} DAY"
    if as_of_fraction is None:
        ref_sql = (
            "SELECT id, CASE WHEN status = 'churned' AND churned_at IS NOT NULL "
            f"THEN churned_at - {gap} ELSE {end_sql} END AS ref_at, "
            "CAST(status = 'churned' AS INTEGER) AS churned FROM c"
        )
    else:
        if not 0 < as_of_fraction < 1:
            raise UnusableInputError("as_of_fraction must lie strictly between 0 and 1")
        starts = [s.replace("max(", "min(") for s in ends]
        start_sql = f"least({', '.join(starts)})" if starts else "now()"
        cut = f"({start_sql} + ({end_sql} - {start_sql}) * {float(as_of_fraction)})"
        ref_sql = (
            f"SELECT id, {cut} AS ref_at, CAST(status = 'churned' AND churned_at > {cut} "
            "AS INTEGER) AS churned FROM c WHERE status <> 'churned' "
            f"OR churned_at > {cut}"
        )
    parts = [f"WITH c AS ({_latest_customers_sql()}), ref AS ({ref_sql})"]
    selects = [
        "SELECT c.id AS customer_id, r.churned, epoch(r.ref_at) AS ref_epoch, c.province, "
        + ", ".join(f"c.{col}" for col in PROFILE_COLUMNS)
    ]
    joins = ["FROM c JOIN ref r ON r.id = c.id"]
    if "voices" in tables:
        esc = ", ".join(f"'{ch}'" for ch in ESCALATION_CHANNELS)
        # Understanding output, when present: the newest reading of each voice.
        read_cols = ""
        read_join = ""
        read_selects = ""
        if "readings" in tables:
            parts.append(
                ", rd AS (SELECT voice_id, arg_max(sentiment, read_at) AS sentiment, "
                "arg_max(urgency, read_at) AS urgency, "
                "arg_max(escalation_risk, read_at) AS escalation_risk "
                "FROM readings GROUP BY voice_id)"
            )
            read_cols = (
                ", count(*) FILTER (WHERE rd.sentiment = 'negative') AS voices_negative, "
                "max(rd.urgency) AS urgency_max, "
                "count(*) FILTER (WHERE rd.escalation_risk) AS voices_escalation_risk"
            )
            read_join = " LEFT JOIN rd ON rd.voice_id = v.id"
            read_selects = (
                ", coalesce(v.voices_negative, 0) AS voices_negative, v.urgency_max, "
                "coalesce(v.voices_escalation_risk, 0) AS voices_escalation_risk"
            )
        if "dialogue_satisfaction" in tables:
            # Predicted dissatisfaction of the customer's calls and chats (assist domain):
            # the mean over their conversations, NULL for customers who never called.
            parts.append(
                ", ds AS (SELECT voice_id, arg_max(p_dissatisfied, scored_at) AS p_dissatisfied "
                "FROM dialogue_satisfaction GROUP BY voice_id)"
            )
            read_cols += ", avg(ds.p_dissatisfied) AS dialogue_dissatisfaction"
            read_join += " LEFT JOIN ds ON ds.voice_id = v.id"
            read_selects += ", v.dialogue_dissatisfaction"
        parts.append(
            ", v AS (SELECT v.customer_id, count(*) AS voices_total, "
            f"count(*) FILTER (WHERE v.received_at >= r.ref_at - {win}) AS voices_recent, "
            f"count(*) FILTER (WHERE v.channel IN ({esc})) AS voices_escalated, "
            "count(*) FILTER (WHERE v.kind IN ('complaint', 'ticket')) AS voices_complaints, "
            "epoch(max(r.ref_at) - max(v.received_at)) / 86400.0 AS days_since_voice"
            f"{read_cols} FROM voices v JOIN ref r ON r.id = v.customer_id{read_join} "
            "WHERE v.received_at < r.ref_at GROUP BY v.customer_id)"
        )
        selects.append(
            "coalesce(v.voices_total, 0) AS voices_total, "
            "coalesce(v.voices_recent, 0) AS voices_recent, "
            "coalesce(v.voices_escalated, 0) AS voices_escalated, "
            "coalesce(v.voices_complaints, 0) AS voices_complaints, v.days_since_voice"
            + read_selects
        )
        joins.append("LEFT JOIN v ON v.customer_id = c.id")
    if "surveys" in tables:
        parts.append(
            ", s AS (SELECT s.customer_id, count(*) AS surveys, avg(s.overall) AS overall_mean, "
            "min(s.overall) AS overall_min, arg_max(s.nps, s.occurred_at) AS nps_last "
            "FROM surveys s JOIN ref r ON r.id = s.customer_id "
            "WHERE s.occurred_at < r.ref_at GROUP BY s.customer_id)"
        )
        selects.append(
            "coalesce(s.surveys, 0) AS surveys, s.overall_mean, s.overall_min, "
            "CAST(s.nps_last AS DOUBLE) AS nps_last"
        )
        joins.append("LEFT JOIN s ON s.customer_id = c.id")
    event_types: list[str] = []
    if "events" in tables:
        churn_types = ", ".join(f"'{t}'" for t in CHURN_EVENTS)
        event_types = [
            str(r[0])
            for r in con.execute(
                "SELECT DISTINCT type FROM events WHERE customer_id IS NOT NULL "
                f"AND type NOT IN ({churn_types}) ORDER BY 1"
            ).fetchall()
        ]
        counts = "".join(
            f", count(*) FILTER (WHERE e.type = '{t.replace(chr(39), '')}') AS \"event {t}\""
            for t in event_types
        )
        parts.append(
            ", e AS (SELECT e.customer_id, "
            "count(*) FILTER (WHERE e.type = 'complaint_replied' "
            "AND map_extract(e.attributes, 'resolved')[1] = 'false') AS unresolved_complaints, "
            # Recent unresolved complaints weigh differently from old ones (and read as
            # "2 unresolved complaints in the last 30 days" in a churn reason).
            "count(*) FILTER (WHERE e.type = 'complaint_replied' "
            "AND map_extract(e.attributes, 'resolved')[1] = 'false' "
            f"AND e.occurred_at >= r.ref_at - {win}) AS unresolved_complaints_recent, "
            f"count(*) FILTER (WHERE e.occurred_at >= r.ref_at - {win}) AS events_recent"
            f"{counts} FROM events e JOIN ref r ON r.id = e.customer_id "
            f"WHERE e.occurred_at < r.ref_at AND e.type NOT IN ({churn_types}) "
            "GROUP BY e.customer_id)"
        )
        selects.append(
            "coalesce(e.unresolved_complaints, 0) AS unresolved_complaints, "
            "coalesce(e.unresolved_complaints_recent, 0) AS unresolved_complaints_recent, "
            "coalesce(e.events_recent, 0) AS events_recent"
            + "".join(f', coalesce(e."event {t}", 0) AS "event {t}"' for t in event_types)
        )
        joins.append("LEFT JOIN e ON e.customer_id = c.id")
    sql = "".join(parts) + " " + ", ".join(selects) + " " + " ".join(joins) + " ORDER BY 1"
    frame: pd.DataFrame = con.sql(sql).to_arrow_table().to_pandas()
    return frame


#: Columns of ``churn_frame`` that are keys or labels, never features.
_CHURN_NON_FEATURES = ("customer_id", "churned", "ref_epoch")


def churn_analysis(
    *, settings: Settings, limit: int = 50, cv: int = 3, seed: int = 0, top: int = 3
) -> dict[str, Any]:
    """Score churn risk: validate out-of-fold, then rank active customers with reasons."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    frame = churn_frame(settings=settings)
    y = frame["churned"].to_numpy(dtype=np.float64)
    if y.sum() < cv or (1 - y).sum() < cv:
        raise NotFoundError(f"too few churned customers ({int(y.sum())}) to model churn")
    x = frame.drop(columns=list(_CHURN_NON_FEATURES))
    params: dict[str, Any] = {"n_estimators": 200, "learning_rate": 0.05, "cv": 3, "seed": seed}
    oof = np.zeros(len(y))
    folds = StratifiedKFold(cv, shuffle=True, random_state=seed)
    for tr, te in folds.split(x, y):
        oof[te] = ChurnModel(**params).fit(x.iloc[tr], y[tr]).predict_proba(x.iloc[te])
    model = ChurnModel(**params).fit(x, y)
    active = np.flatnonzero(y == 0)
    ranked = model.rank(
        x.iloc[active], frame["customer_id"].to_numpy()[active], top=top, limit=limit
    )
    validation: dict[str, Any] = {
        "protocol": f"{cv}-fold out-of-fold over customers; churner features stop "
        f"{CHURN_GAP_DAYS} days before churn",
        "roc_auc": float(roc_auc_score(y, oof)),
        "pr_auc": float(average_precision_score(y, oof)),
        "brier": float(brier_score_loss(y, oof)),
    }
    # Time-based check: features up to a cut-off at 2/3 of the span, label = churn later.
    timed = churn_frame(settings=settings, as_of_fraction=2 / 3)
    y_t = timed["churned"].to_numpy(dtype=np.float64)
    if y_t.sum() >= cv and (1 - y_t).sum() >= cv:
        x_t = timed.drop(columns=list(_CHURN_NON_FEATURES))
        oof_t = np.zeros(len(y_t))
        for tr, te in StratifiedKFold(cv, shuffle=True, random_state=seed).split(x_t, y_t):
            part = ChurnModel(**params).fit(x_t.iloc[tr], y_t[tr])
            oof_t[te] = part.predict_proba(x_t.iloc[te])
        validation["time_based"] = {
            "protocol": "features up to 2/3 of the lake's time span; label = churn after "
            f"it; {cv}-fold over customers",
            "customers": len(y_t),
            "churned_after_cutoff": int(y_t.sum()),
            "roc_auc": float(roc_auc_score(y_t, oof_t)),
            "pr_auc": float(average_precision_score(y_t, oof_t)),
        }
    return {
        "customers": len(y),
        "churned": int(y.sum()),
        "validation": validation,
        "at_risk": ranked,
        "oof_risk": dict(zip(frame["customer_id"].astype(str), oof.tolist(), strict=True)),
    }


# ---------------------------------------------------------------------------
# Journeys

#: Overall scores at or above this make a customer "satisfied" (delighted bucket).
SATISFIED_AT_LEAST = 9.0


def _tokens(con: Any, tables: set[str]) -> pd.DataFrame:
    parts = []
    if "events" in tables:
        parts.append(
            "SELECT customer_id, epoch(occurred_at) AS ts, type AS token FROM events "
            "WHERE customer_id IS NOT NULL"
        )
    if "voices" in tables:
        parts.append(
            "SELECT customer_id, epoch(received_at) AS ts, 'voice:' || channel AS token "
            "FROM voices WHERE customer_id IS NOT NULL"
        )
    if not parts:
        return pd.DataFrame({"customer_id": [], "ts": [], "token": []})
    result: pd.DataFrame = con.sql(" UNION ALL ".join(parts)).to_arrow_table().to_pandas()
    return result


def journeys_analysis(
    *,
    settings: Settings,
    customer_ids: list[str] | None = None,
    days: float = 30.0,
    max_n: int = 3,
    limit: int = 20,
    timelines: int = 5,
    segment: int | None = None,
) -> dict[str, Any]:
    """Contrast what happened before dissatisfaction with what happened to satisfied customers.

    The focus group is every customer with a dissatisfied rating, or ``customer_ids``
    (anchored at their first dissatisfied rating, else after their last record), or the
    dissatisfied customers of segment rule number ``segment`` (0 = top rule).
    """
    from voxloop.store.service import lake_connection

    segment_text = None
    if segment is not None:
        customer_ids, segment_text = segment_customers(settings=settings, index=segment)

    con = lake_connection(settings, ("surveys", "events", "voices"))
    tables = _tables(con)
    if "surveys" not in tables:
        raise NotFoundError("the lake holds no survey responses; ingest surveys first")
    surveys = (
        con.sql(
            "SELECT customer_id, epoch(occurred_at) AS ts, overall FROM surveys "
            "WHERE customer_id IS NOT NULL"
        )
        .to_arrow_table()
        .to_pandas()
    )
    low, high = anchors_from_surveys(
        surveys, dissatisfied_at_most=DISSATISFIED_AT_MOST, satisfied_at_least=SATISFIED_AT_LEAST
    )
    tokens = _tokens(con, tables)
    if customer_ids:
        wanted = pd.DataFrame({"customer_id": customer_ids})
        focus = wanted.merge(low, on="customer_id", how="left")
        last = tokens.groupby("customer_id")["ts"].max().rename("last").reset_index()
        focus = focus.merge(last, on="customer_id", how="left")
        focus["anchor"] = focus["anchor"].fillna(focus["last"] + 1)
        focus = focus.dropna(subset=["anchor"])[["customer_id", "anchor"]]
        reference = high[~high["customer_id"].isin(customer_ids)]
    else:
        focus, reference = low, high
    focus_tokens = before_anchor(tokens, focus, days=days)
    ref_tokens = before_anchor(tokens, reference, days=days)
    sequences = contrast(
        focus_tokens,
        ref_tokens,
        n_focus=len(focus),
        n_reference=len(reference),
        max_n=max_n,
        limit=limit,
    )
    shown = focus["customer_id"].head(timelines).tolist()
    return {
        "segment": segment_text,
        "focus_customers": len(focus),
        "reference_customers": len(reference),
        "days_before": days,
        "sequences": sequences,
        "timelines": customer_timelines(settings=settings, customer_ids=shown, days=days)
        if shown
        else [],
    }


def segment_customers(*, settings: Settings, index: int = 0) -> tuple[list[str], str]:
    """Return the dissatisfied customers of segment rule ``index`` and the rule's text."""
    from voxloop.analyze.segments import Condition

    result = segments_analysis(settings=settings)
    rules = result["rules"]
    if not 0 <= index < len(rules):
        raise NotFoundError(f"segment rule {index} does not exist ({len(rules)} rules found)")
    rule = rules[index]
    conds = [
        Condition(
            c["column"], c["op"], tuple(c["value"]) if isinstance(c["value"], list) else c["value"]
        )
        for c in rule["conditions"]
    ]
    frame, _factors = survey_frame(settings=settings)
    hit = rule_mask(frame, conds) & (frame["overall"] <= DISSATISFIED_AT_MOST).to_numpy()
    ids = sorted(set(frame.loc[hit, "customer_id"].dropna().astype(str)))
    return ids, str(rule["text"])


def customer_timelines(
    *, settings: Settings, customer_ids: list[str], days: float | None = None
) -> list[dict[str, Any]]:
    """Return each customer's voices, ratings and journey events in time order."""
    from voxloop.store.service import lake_connection

    con = lake_connection(settings, ("surveys", "events", "voices"))
    tables = _tables(con)
    parts = []
    if "events" in tables:
        parts.append(
            "SELECT customer_id, occurred_at AS happened, 'event' AS source, type AS what, "
            "CAST(NULL AS VARCHAR) AS detail FROM events"
        )
    if "voices" in tables:
        parts.append(
            "SELECT customer_id, received_at AS happened, 'voice' AS source, "
            "kind || '@' || channel AS what, left(text, 120) AS detail FROM voices"
        )
    if "surveys" in tables:
        parts.append(
            "SELECT customer_id, occurred_at AS happened, 'survey' AS source, touchpoint AS what, "
            "'overall ' || CAST(overall AS VARCHAR) AS detail FROM surveys"
        )
    if not parts or not customer_ids:
        return []
    con.register("wanted", pd.DataFrame({"customer_id": customer_ids}))
    sql = (
        "SELECT customer_id, strftime(happened, '%Y-%m-%dT%H:%M:%SZ') AS at, source, what, "
        f"detail FROM ({' UNION ALL '.join(parts)}) t "
        "WHERE customer_id IN (SELECT customer_id FROM wanted)"
    )
    if days is not None:
        sql += (
            f" AND happened >= (SELECT max(happened) FROM ({' UNION ALL '.join(parts)}) u "
            f"WHERE u.customer_id = t.customer_id) - INTERVAL {int(days)} DAY"
        )
    rows = con.sql(sql + " ORDER BY customer_id, happened").to_arrow_table().to_pylist()
    grouped: dict[str, list[dict[str, Any]]] = {cid: [] for cid in customer_ids}
    for row in rows:
        cid = str(row.pop("customer_id"))
        grouped.setdefault(cid, []).append(row)
    return [{"customer_id": cid, "items": items} for cid, items in grouped.items()]


# ---------------------------------------------------------------------------
# Result cache: analyses are pure functions of the lake, so a result stays valid until
# a new part file lands.

_CACHE: dict[tuple[str, str, str], tuple[tuple[str, ...], dict[str, Any]]] = {}
_CACHE_MAX = 32
_CACHE_LOCK = threading.Lock()
#: Result files kept on disk; the least recently used beyond this are deleted. Results of
#: older lake states are never read again, and each region or parameter set adds files.
DISK_CACHE_FILES = 256


def _lake_signature(settings: Settings) -> tuple[str, ...]:
    from voxloop.store.service import part_files

    return tuple(
        str(p.name)
        for table in ("surveys", "customers", "voices", "events", "readings")
        for p in part_files(settings, table)
    )


def _disk_cache_path(settings: Settings, key: tuple[str, str, str], sig: tuple[str, ...]) -> Path:
    import hashlib

    digest = hashlib.sha256(repr((key[1:], sig)).encode()).hexdigest()[:32]
    return settings.home / "cache" / "analyze" / f"{key[1]}-{digest}.json"


def _mark_used(path: Path) -> None:
    """Record a cache hit as the file's time of use (pruning keeps recent files)."""
    import contextlib
    import os

    # utime never creates the file (unlike touch), so a pruned file stays gone; a read-only
    # cache still serves hits.
    with contextlib.suppress(OSError):
        os.utime(path)


def _prune_disk_cache(folder: Path, *, keep: int) -> int:
    """Delete all but the ``keep`` most recently used result files; return how many went."""
    entries = []
    for path in folder.glob("*.json"):
        try:
            entries.append((path.stat().st_mtime, path))
        except OSError:
            continue  # removed by another process meanwhile
    entries.sort(reverse=True)
    removed = 0
    for _, path in entries[keep:]:
        # A reader racing this delete just recomputes: the cache is never the only copy.
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def cached(
    *, settings: Settings, name: str, params: dict[str, Any], compute: Any
) -> dict[str, Any]:
    """Return ``compute()`` for this lake state, reusing the last result while unchanged.

    Results are kept in memory and on disk under ``home/cache/analyze``, so the pipeline
    (another process) can compute them once and the server only reads them.
    """
    import json
    import os

    key = (str(settings.lake_dir.resolve()), name, repr(sorted(params.items())))
    signature = _lake_signature(settings)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] == signature:
        return hit[1]
    path = _disk_cache_path(settings, key, signature)
    result: dict[str, Any]
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        _mark_used(path)
    except (OSError, ValueError):
        result = compute()
        try:
            text = json.dumps(result, ensure_ascii=False, allow_nan=True)
        except (TypeError, ValueError):
            text = None  # not JSON-able: memory cache only
        if text is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Per process and thread: the server computes analyses in a worker thread too.
            tmp = path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
            _prune_disk_cache(path.parent, keep=DISK_CACHE_FILES)
    with _CACHE_LOCK:
        while len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = (signature, result)
    return result


def analysis_stage(*, settings: Settings) -> dict[str, Any]:
    """Precompute the dashboard's default analyses (drivers, segments, churn) for this lake."""
    import time

    started = time.perf_counter()
    done: dict[str, Any] = {}
    jobs: list[tuple[str, dict[str, Any], Any]] = [
        (
            "drivers",
            {"outcome": "overall", "touchpoint": None},
            lambda: drivers_analysis(settings=settings, outcome="overall", touchpoint=None),
        ),
        (
            "segments",
            {"outcome": "dissatisfied"},
            lambda: segments_analysis(settings=settings, outcome="dissatisfied", path={}),
        ),
        ("churn", {}, lambda: churn_analysis(settings=settings, limit=1000)),
    ]
    for name, params, compute in jobs:
        try:
            cached(settings=settings, name=name, params=params, compute=compute)
            done[name] = "ok"
        except VoxloopError as exc:  # e.g. no surveys yet: the page explains it
            done[name] = f"skipped: {exc}"
    done["seconds"] = round(time.perf_counter() - started, 1)
    return done
