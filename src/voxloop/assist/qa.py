"""Quality inspection (质检) of every call transcript and chat: stage, scores, labels, evaluation.

The stage inspects each ``call_transcript``/``chat`` voice not yet inspected under the
current rule pack version and appends batch part files to two lake tables:
``qa_conversations`` (one row per conversation and run: score, pass, agent, team, region)
and ``qa_hits`` (one row per rule hit, with the turns that triggered it). Editing the
rule pack changes its version, so the next run inspects every conversation again; the
latest row of a conversation counts.

QA staff confirm or overturn a hit, or report a violation the engine missed; verdicts are
operational records (``assist_qa_labels``) and each change is written to the audit log.
Overturned hits no longer count in scores. ``evaluate_qa`` reports per-rule precision and
recall against those labels or against a generator's ground truth.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from time import perf_counter
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from voxloop.act.access import Principal
from voxloop.assist.models import QaLabel
from voxloop.assist.qa_engine import (
    HIT_SCHEMA,
    Inspector,
    RulePack,
    inspect_table,
    load_pack,
    turn_list,
)
from voxloop.config import Settings
from voxloop.errors import NotFoundError, PermissionDeniedError, UnusableInputError
from voxloop.store.service import lake_connection, part_files, write_part, writer_lock

QA_CONVERSATIONS = "qa_conversations"
QA_HITS = "qa_hits"
INSPECTED_KINDS = ("call_transcript", "chat")
#: Roles whose members may judge hits (agents are inspected, so they may not).
REVIEWER_ROLES = ("admin", "supervisor")
VERDICTS = ("confirm", "overturn", "missed")

_INSPECTORS: dict[str, Inspector] = {}
_LOCK = threading.Lock()


class LabelRequest(BaseModel):
    """A reviewer's verdict on a hit."""

    verdict: Literal["confirm", "overturn"]
    note: str | None = Field(default=None, max_length=2000)


class MissedRequest(BaseModel):
    """A violation the engine did not report on a conversation."""

    rule_id: str = Field(min_length=1, max_length=64)
    note: str | None = Field(default=None, max_length=2000)


class QaScope(BaseModel):
    """Filters of the scores: region, channel, period, agent, team, rule.

    ``date_from``/``date_to`` are local calendar days (``settings.timezone``) of the
    conversation; ``days`` keeps the last N days before the latest conversation.
    """

    model_config = ConfigDict(populate_by_name=True)

    province: str | None = Field(default=None, max_length=100)
    city: str | None = Field(default=None, max_length=100)
    district: str | None = Field(default=None, max_length=100)
    channel: str | None = Field(default=None, max_length=100)
    date_from: date | None = Field(default=None, alias="from")
    date_to: date | None = Field(default=None, alias="to")
    days: int | None = Field(default=None, ge=1, le=3650)
    agent_id: str | None = Field(default=None, max_length=200)
    team: str | None = Field(default=None, max_length=200)
    rule_id: str | None = Field(default=None, max_length=64)
    limit: int = Field(default=50, ge=1, le=1000)


def rule_pack(settings: Settings) -> RulePack:
    """Return the configured rule pack (``settings.qa_rules``, else the shipped one)."""
    path = getattr(settings, "qa_rules", None)
    return load_pack(Path(path) if path else None)


def inspector(settings: Settings) -> Inspector:
    """Return the compiled inspector of the configured pack (compiled once per version)."""
    pack = rule_pack(settings)
    with _LOCK:
        if pack.version not in _INSPECTORS:
            _INSPECTORS[pack.version] = Inspector(pack)
        return _INSPECTORS[pack.version]


def _new_conversations_sql(*, has_qa: bool, has_readings: bool) -> str:
    kinds = ", ".join(f"'{k}'" for k in INSPECTED_KINDS)
    anti = (
        "AND NOT EXISTS (SELECT 1 FROM qa_conversations q "
        "WHERE q.voice_id = v.id AND q.pack_version = $version)"
        if has_qa
        else ""
    )
    intent = (
        "LEFT JOIN (SELECT voice_id, intent FROM readings QUALIFY row_number() OVER "
        "(PARTITION BY voice_id ORDER BY read_at DESC) = 1) r ON r.voice_id = v.id"
        if has_readings
        else ""
    )
    return f"""
        WITH latest AS (
            SELECT id, text, kind, channel, province, city, district, received_at, attributes
            FROM voices
            QUALIFY row_number() OVER (PARTITION BY id ORDER BY ingested_at DESC) = 1
        )
        SELECT v.id, v.text, v.kind, v.channel, v.province, v.city, v.district, v.received_at,
            v.attributes['agent_id'] AS agent_id, v.attributes['team'] AS team,
            {"r.intent" if has_readings else "NULL::VARCHAR"} AS intent
        FROM latest v {intent}
        WHERE v.kind IN ({kinds}) {anti}
        ORDER BY v.id
    """


def qa_stage(*, settings: Settings) -> dict[str, Any]:
    """Inspect every call transcript and chat not yet inspected under the current pack."""
    started = perf_counter()
    if not part_files(settings, "voices"):
        return {"inspected": 0, "pack_version": None}
    # The pack is parsed here; compiling it (and the lexicon import) waits for new work.
    version = rule_pack(settings).version
    engine: Inspector | None = None
    run_id = uuid.uuid4().hex[:12]
    at = datetime.now(UTC)
    seen = inspected = hits = failed = 0
    with writer_lock(settings, QA_CONVERSATIONS):
        has_qa = bool(part_files(settings, QA_CONVERSATIONS))
        has_readings = bool(part_files(settings, "readings"))
        tables = ("voices",) + (("readings",) if has_readings else ())
        tables += (QA_CONVERSATIONS,) if has_qa else ()
        con = lake_connection(settings, tables)
        sql = _new_conversations_sql(has_qa=has_qa, has_readings=has_readings)
        reader = con.sql(sql, params={"version": version} if has_qa else None).to_arrow_reader(
            settings.batch_size
        )
        for batch in reader:
            if batch.num_rows == 0:
                continue
            engine = engine or inspector(settings)
            convs, found = inspect_table(
                pa.Table.from_batches([batch]), inspector=engine, run_id=run_id, inspected_at=at
            )
            # Hits first: a reader that sees a conversation row also finds its hits.
            write_part(settings, QA_HITS, found)
            write_part(settings, QA_CONVERSATIONS, convs)
            seen += convs.num_rows
            inspected += int(sum(convs.column("inspected").to_pylist()))
            hits += found.num_rows
            failed += sum(1 for p in convs.column("passed").to_pylist() if p is False)
        con.close()
    seconds = perf_counter() - started
    return {
        "conversations": seen,
        "inspected": inspected,
        "hits": hits,
        "failed": failed,
        "pack_version": version,
        "run_id": run_id if seen else None,
        "seconds": round(seconds, 3),
    }


# ---------------------------------------------------------------------------
# Reading results


def _pinned(scope: QaScope, principal: Principal | None) -> QaScope:
    """Return ``scope`` with the caller's region forced onto it (403 when outside)."""
    if principal is None:
        return scope
    values = scope.model_dump(by_alias=False)
    for name, pinned in (("province", principal.province), ("city", principal.city)):
        if pinned is None:
            continue
        if values[name] not in (None, "", pinned):
            raise PermissionDeniedError(f"{name} {values[name]!r} is outside your region scope")
        values[name] = pinned
    return QaScope.model_validate(values)


def _overturned(session: Session | None) -> list[str]:
    if session is None:
        return []
    rows = session.scalars(
        select(QaLabel.hit_id).where(QaLabel.verdict == "overturn", QaLabel.hit_id.is_not(None))
    )
    return [r for r in rows if r]


def _local_midnight(day: date, tz: str) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime.combine(day, time(), ZoneInfo(tz)).astimezone(UTC)


def _scored_sql(scope: QaScope, tz: str = "Asia/Shanghai") -> tuple[str, dict[str, Any]]:
    """SQL of the latest inspected conversations in scope with review-adjusted scores."""
    where = ["c.inspected"]
    params: dict[str, Any] = {}
    for name in ("province", "city", "district", "channel", "agent_id", "team"):
        value = getattr(scope, name)
        if value:
            where.append(f"c.{name} = ${name}")
            params[name] = value
    if scope.date_from:
        where.append("c.received_at >= $date_from")
        params["date_from"] = _local_midnight(scope.date_from, tz)
    if scope.date_to:
        where.append("c.received_at < $date_to")
        params["date_to"] = _local_midnight(scope.date_to + timedelta(days=1), tz)
    if scope.days:
        where.append(
            f"c.received_at >= (SELECT max(received_at) FROM qa_conversations) "
            f"- INTERVAL {int(scope.days)} DAYS"
        )
    sql = f"""
        WITH c AS (
            SELECT * FROM qa_conversations
            QUALIFY row_number() OVER (PARTITION BY voice_id ORDER BY inspected_at DESC,
                run_id DESC) = 1
        ), cs AS (SELECT * FROM c WHERE {" AND ".join(where)}),
        h AS (
            SELECT h.* FROM qa_hits h JOIN cs ON h.voice_id = cs.voice_id
                AND h.run_id = cs.run_id
            WHERE h.hit_id NOT IN (SELECT hit_id FROM overturned)
        ), scored AS (
            SELECT cs.voice_id, cs.agent_id, cs.team, cs.province, cs.city, cs.district,
                cs.channel,
                cs.kind, cs.received_at, cs.timed,
                greatest(0, 100 - coalesce(sum(h.score), 0)) AS score,
                count(h.hit_id) AS n_hits,
                count(h.hit_id) FILTER (WHERE h.severity = 'critical') AS n_critical,
                list(h.rule_id ORDER BY h.rule_id) FILTER (WHERE h.rule_id IS NOT NULL)
                    AS rules_hit
            FROM cs LEFT JOIN h ON h.voice_id = cs.voice_id
            GROUP BY ALL
        )
    """
    return sql, params


def _connection(settings: Settings, overturned: list[str]) -> Any:
    con = lake_connection(settings, (QA_CONVERSATIONS, QA_HITS, "voices"))
    con.register("overturned", pa.table({"hit_id": pa.array(overturned, pa.string())}))
    if not part_files(settings, QA_HITS):
        # A run whose conversations had no hit writes no hits part file.
        con.register(QA_HITS, HIT_SCHEMA.empty_table())
    return con


def _records(con: Any, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    table = con.sql(sql, params=params or None).to_arrow_table()
    rows: list[dict[str, Any]] = table.to_pylist()
    for row in rows:
        for key, value in row.items():
            if isinstance(value, datetime):
                row[key] = value.astimezone(UTC).isoformat()
            elif isinstance(value, float):
                row[key] = round(value, 2)
    return rows


def qa_scores(
    *,
    settings: Settings,
    scope: QaScope,
    principal: Principal | None = None,
    session: Session | None = None,
    lang: str = "en",
) -> dict[str, Any]:
    """Return QA scores in scope: summary, rules (most hit first), agents, teams, worst calls."""
    scope = _pinned(scope, principal)
    pack = rule_pack(settings)
    empty: dict[str, Any] = {
        "pack": {"name": pack.name, "version": pack.version, "pass_mark": pack.pass_mark},
        "scope": scope.model_dump(mode="json"),
        "summary": {"conversations": 0, "inspected": 0},
        "rules": [],
        "agents": [],
        "teams": [],
        "conversations": [],
    }
    if not part_files(settings, QA_CONVERSATIONS):
        return empty
    con = _connection(settings, _overturned(session))
    base, params = _scored_sql(scope, settings.timezone)
    mark = float(pack.pass_mark)
    passed = f"(n_critical = 0 AND score >= {mark})"
    summary = _records(
        con,
        base
        + f"""SELECT count(*) AS inspected, avg(score) AS mean_score,
            avg(CASE WHEN {passed} THEN 1.0 ELSE 0.0 END) AS pass_rate,
            sum(n_hits) AS hits, sum(n_critical) AS critical,
            count(DISTINCT agent_id) AS agents, count(DISTINCT team) AS teams,
            count(*) FILTER (WHERE timed) AS timed FROM scored""",
        params,
    )[0]
    n = int(summary["inspected"] or 0)
    if n == 0:
        con.close()
        return empty
    region_where = [
        f"{name} = ${name}" for name in ("province", "city") if params.get(name) is not None
    ]
    total = con.execute(
        "SELECT count(DISTINCT voice_id) FROM qa_conversations"
        + (f" WHERE {' AND '.join(region_where)}" if region_where else ""),
        {k: v for k, v in params.items() if k in ("province", "city")},
    ).fetchall()
    summary["conversations"] = int(total[0][0]) if total else n
    summary["coverage"] = round(n / max(1, summary["conversations"]), 4)
    group_cols = f"""count(*) AS conversations, avg(score) AS mean_score,
        avg(CASE WHEN {passed} THEN 1.0 ELSE 0.0 END) AS pass_rate,
        sum(n_hits) AS hits, sum(n_critical) AS critical"""
    agents = _records(
        con,
        base
        + f"""SELECT agent_id, any_value(team) AS team, {group_cols} FROM scored
            GROUP BY agent_id ORDER BY mean_score, agent_id NULLS LAST LIMIT {scope.limit}""",
        params,
    )
    teams = _records(
        con,
        base
        + f"""SELECT team, count(DISTINCT agent_id) AS agents, {group_cols} FROM scored
            GROUP BY team ORDER BY mean_score, team NULLS LAST LIMIT {scope.limit}""",
        params,
    )
    rule_rows = _records(
        con,
        base + "SELECT unnest(rules_hit) AS rule_id, count(*) AS hits FROM scored GROUP BY 1",
        params,
    )
    worst_where = "WHERE list_contains(rules_hit, $rule_id)" if scope.rule_id else ""
    if scope.rule_id:
        params = {**params, "rule_id": scope.rule_id}
    worst = _records(
        con,
        base
        + f"""SELECT voice_id, agent_id, team, province, city, received_at, score,
            n_hits, n_critical, rules_hit, {passed} AS passed FROM scored {worst_where}
            ORDER BY score, n_critical DESC, received_at DESC, voice_id LIMIT {scope.limit}""",
        params,
    )
    con.close()
    hit_counts = {r["rule_id"]: int(r["hits"]) for r in rule_rows}
    verdicts = _verdict_counts(session, scope)
    timed = int(summary["timed"] or 0)
    rules: list[dict[str, Any]] = []
    for rule in pack.rules:
        base_n = timed if rule.timed else n
        count = hit_counts.get(rule.id, 0)
        v = verdicts.get(rule.id, {})
        rules.append(
            {
                "rule_id": rule.id,
                "name": rule.name.get(lang, rule.name["en"]),
                "category": rule.category,
                "severity": rule.severity,
                "score": rule.score,
                "hits": count,
                "rate": round(count / base_n, 4) if base_n else None,
                "confirmed": v.get("confirm", 0),
                "overturned": v.get("overturn", 0),
                "missed": v.get("missed", 0),
            }
        )
    rules.sort(key=lambda r: (-float(r["rate"] or 0.0), -int(r["hits"]), str(r["rule_id"])))
    empty.update(summary=summary, rules=rules, agents=agents, teams=teams, conversations=worst)
    return empty


def _verdict_counts(session: Session | None, scope: QaScope) -> dict[str, dict[str, int]]:
    if session is None:
        return {}
    query = select(QaLabel.rule_id, QaLabel.verdict)
    if scope.province:
        query = query.where(QaLabel.province == scope.province)
    if scope.city:
        query = query.where(QaLabel.city == scope.city)
    out: dict[str, dict[str, int]] = {}
    for rule_id, verdict in session.execute(query):
        counts = out.setdefault(rule_id, {})
        counts[verdict] = counts.get(verdict, 0) + 1
    return out


def _latest_conversation(con: Any, voice_id: str) -> dict[str, Any] | None:
    rows = _records(
        con,
        """SELECT * FROM qa_conversations WHERE voice_id = $id
           ORDER BY inspected_at DESC, run_id DESC LIMIT 1""",
        {"id": voice_id},
    )
    return rows[0] if rows else None


def qa_conversation(
    *,
    settings: Settings,
    voice_id: str,
    principal: Principal | None = None,
    session: Session | None = None,
    lang: str = "en",
) -> dict[str, Any]:
    """Return one inspected conversation: turns, hits (with evidence turns) and labels."""
    if not part_files(settings, QA_CONVERSATIONS):
        raise NotFoundError(f"conversation {voice_id!r} has not been inspected")
    con = _connection(settings, [])
    row = _latest_conversation(con, voice_id)
    if row is None or (principal is not None and not principal.sees(row["province"], row["city"])):
        con.close()
        # Outside the caller's region it answers as if it did not exist.
        raise NotFoundError(f"conversation {voice_id!r} has not been inspected")
    hits = _records(
        con,
        "SELECT hit_id, rule_id, severity, score, turns FROM qa_hits "
        "WHERE voice_id = $id AND run_id = $run ORDER BY rule_id",
        {"id": voice_id, "run": row["run_id"]},
    )
    text = con.execute(
        "SELECT text FROM voices WHERE id = $id ORDER BY ingested_at DESC LIMIT 1",
        {"id": voice_id},
    ).fetchall()
    con.close()
    labels = {}
    if session is not None:
        for label in session.scalars(select(QaLabel).where(QaLabel.voice_id == voice_id)):
            labels[label.rule_id] = {
                "verdict": label.verdict,
                "note": label.note,
                "actor": label.actor,
                "updated_at": label.updated_at.isoformat(),
            }
    pack = rule_pack(settings)
    names = {r.id: r.name.get(lang, r.name["en"]) for r in pack.rules}
    deductions = 0.0
    for hit in hits:
        hit["name"] = names.get(hit["rule_id"], hit["rule_id"])
        hit["label"] = labels.get(hit["rule_id"])
        if not (hit["label"] and hit["label"]["verdict"] == "overturn"):
            deductions += float(hit["score"] or 0)
    hit_rules = {h["rule_id"] for h in hits}
    missed = [
        {"rule_id": rid, "name": names.get(rid, rid), **lab}
        for rid, lab in labels.items()
        if lab["verdict"] == "missed" and rid not in hit_rules
    ]
    turns = turn_list(str(text[0][0])) if text else []
    marked: dict[int, list[str]] = {}
    for hit in hits:
        for k in hit["turns"] or []:
            marked.setdefault(int(k), []).append(hit["rule_id"])
    for turn in turns:
        turn["rules"] = marked.get(turn["index"], [])
    row["reviewed_score"] = max(0.0, 100.0 - deductions)
    return {
        "conversation": row,
        "turns": turns,
        "hits": hits,
        "missed": missed,
        "rules": [
            {"rule_id": r.id, "name": names[r.id], "severity": r.severity} for r in pack.rules
        ],
    }


def _hit_row(settings: Settings, hit_id: str) -> dict[str, Any] | None:
    if not part_files(settings, QA_HITS):
        return None
    con = _connection(settings, [])
    rows = _records(
        con,
        """SELECT h.hit_id, h.voice_id, h.rule_id, c.province, c.city FROM qa_hits h
           JOIN qa_conversations c ON c.voice_id = h.voice_id AND c.run_id = h.run_id
           WHERE h.hit_id = $id LIMIT 1""",
        {"id": hit_id},
    )
    con.close()
    return rows[0] if rows else None


def _reviewer(principal: Principal) -> None:
    if principal.role not in REVIEWER_ROLES:
        raise PermissionDeniedError(
            f"role {principal.role!r} of {principal.username!r} may not judge QA hits; "
            f"reviewers have one of the roles {list(REVIEWER_ROLES)}"
        )


def _store_label(
    *,
    session: Session,
    principal: Principal,
    voice_id: str,
    rule_id: str,
    hit_id: str | None,
    verdict: str,
    note: str | None,
    province: str | None,
    city: str | None,
) -> dict[str, Any]:
    from voxloop.act.service import audit

    now = datetime.now(UTC)
    label = session.scalar(
        select(QaLabel).where(QaLabel.voice_id == voice_id, QaLabel.rule_id == rule_id)
    )
    previous = label.verdict if label is not None else None
    if label is None:
        label = QaLabel(
            voice_id=voice_id,
            rule_id=rule_id,
            created_at=now,
            actor=principal.username,
            verdict=verdict,
        )
        session.add(label)
    label.hit_id = hit_id
    label.verdict = verdict
    label.note = note
    label.province = province
    label.city = city
    label.actor = principal.username
    label.updated_at = now
    audit(
        session=session,
        actor=principal.username,
        action=f"qa.label.{verdict}",
        object_type="qa_hit",
        object_id=hit_id or f"{voice_id}#{rule_id}",
        detail={
            "voice_id": voice_id,
            "rule_id": rule_id,
            "verdict": verdict,
            "previous": previous,
            "note": note,
        },
        at=now,
    )
    session.commit()
    return {
        "voice_id": voice_id,
        "rule_id": rule_id,
        "hit_id": hit_id,
        "verdict": verdict,
        "previous": previous,
        "note": note,
        "actor": principal.username,
        "updated_at": now.isoformat(),
    }


def label_hit(
    *,
    session: Session,
    settings: Settings,
    principal: Principal,
    hit_id: str,
    request: LabelRequest,
) -> dict[str, Any]:
    """Confirm or overturn a hit (404 when unknown or outside the caller's region)."""
    _reviewer(principal)
    row = _hit_row(settings, hit_id)
    if row is None or not principal.sees(row["province"], row["city"]):
        raise NotFoundError(f"QA hit {hit_id!r} not found")
    return _store_label(
        session=session,
        principal=principal,
        voice_id=row["voice_id"],
        rule_id=row["rule_id"],
        hit_id=hit_id,
        verdict=request.verdict,
        note=request.note,
        province=row["province"],
        city=row["city"],
    )


def label_missed(
    *,
    session: Session,
    settings: Settings,
    principal: Principal,
    voice_id: str,
    request: MissedRequest,
) -> dict[str, Any]:
    """Record a violation of ``rule_id`` that the engine did not report on a conversation."""
    _reviewer(principal)
    pack = rule_pack(settings)
    if request.rule_id not in {r.id for r in pack.rules}:
        raise UnusableInputError(
            f"rule_id: {request.rule_id!r} is not a rule of pack {pack.name} {pack.version}"
        )
    detail = qa_conversation(settings=settings, voice_id=voice_id, principal=principal)
    if any(h["rule_id"] == request.rule_id for h in detail["hits"]):
        raise UnusableInputError(
            f"rule_id: {request.rule_id!r} already hit conversation {voice_id!r}; "
            "confirm the hit instead"
        )
    conv = detail["conversation"]
    return _store_label(
        session=session,
        principal=principal,
        voice_id=voice_id,
        rule_id=request.rule_id,
        hit_id=None,
        verdict="missed",
        note=request.note,
        province=conv["province"],
        city=conv["city"],
    )


# ---------------------------------------------------------------------------
# Evaluation


def _prf(tp: int, fp: int, fn: int) -> dict[str, Any]:
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall
        else None
    )
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": None if precision is None else round(precision, 4),
        "recall": None if recall is None else round(recall, 4),
        "f1": None if f1 is None else round(f1, 4),
    }


def read_truth(path: Path) -> tuple[list[str], dict[str, set[str]]]:
    """Read ``qa_conversations`` and ``qa_violations`` from a generator's ground truth."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnusableInputError(f"{path}: cannot read ground truth: {exc}") from None
    if not isinstance(data, dict):
        raise UnusableInputError(f"{path}: ground truth must be a JSON object")
    convs = data.get("qa_conversations")
    viol = data.get("qa_violations", {})
    if not isinstance(convs, list) or not isinstance(viol, dict):
        raise UnusableInputError(
            f"{path}: needs 'qa_conversations' (list of voice ids) and 'qa_violations' "
            "({voice_id: [rule_id, ...]})"
        )
    for vid, rules in viol.items():
        if not isinstance(rules, list):
            raise UnusableInputError(f"{path}: qa_violations[{vid!r}] must be a list of rule ids")
    return [str(c) for c in convs], {str(k): {str(r) for r in v} for k, v in viol.items()}


def _latest_results(settings: Settings) -> tuple[dict[str, dict[str, Any]], dict[str, set[str]]]:
    if not part_files(settings, QA_CONVERSATIONS):
        return {}, {}
    con = _connection(settings, [])
    base, params = _scored_sql(QaScope())
    rows = _records(con, base + "SELECT voice_id, timed, rules_hit FROM scored", params)
    con.close()
    convs = {r["voice_id"]: r for r in rows}
    return convs, {vid: set(r["rules_hit"] or []) for vid, r in convs.items()}


def evaluate_qa(
    *, settings: Settings, truth: Path | None = None, session: Session | None = None
) -> dict[str, Any]:
    """Report per-rule precision/recall against QA labels, or a ground-truth file.

    With labels, a verdict says whether the rule is truly violated (confirm, missed) or
    not (overturn); it is compared with what the latest inspection finds, so a changed
    rule pack is measured against every verdict given so far. With ``truth``, every
    inspected conversation it lists counts: a rule hit that the truth lists is a true
    positive, and so on.
    """
    pack = rule_pack(settings)
    per_rule: dict[str, list[int]] = {r.id: [0, 0, 0] for r in pack.rules}
    out: dict[str, Any] = {"pack_version": pack.version}
    if truth is not None:
        listed, violations = read_truth(truth)
        convs, predicted = _latest_results(settings)
        universe = [vid for vid in listed if vid in convs]
        out.update(
            source=str(truth),
            conversations=len(universe),
            not_inspected=len(listed) - len(universe),
        )
        for vid in universe:
            got, want = predicted.get(vid, set()), violations.get(vid, set())
            for rule in pack.rules:
                if rule.timed and not convs[vid]["timed"]:
                    continue
                counts = per_rule[rule.id]
                if rule.id in got and rule.id in want:
                    counts[0] += 1
                elif rule.id in got:
                    counts[1] += 1
                elif rule.id in want:
                    counts[2] += 1
    else:
        if session is None:
            raise UnusableInputError("evaluate_qa needs a session to read labels, or a truth file")
        # Verdicts say what is true; the latest inspection says what the engine finds now,
        # so a changed pack is measured against every verdict given so far.
        _convs, predicted = _latest_results(settings)
        n_labels = 0
        query = select(QaLabel.voice_id, QaLabel.rule_id, QaLabel.verdict)
        for voice_id, rule_id, verdict in session.execute(query):
            n_labels += 1
            if rule_id not in per_rule:
                continue
            found = rule_id in predicted.get(voice_id, set())
            violation = verdict in ("confirm", "missed")
            if found:
                per_rule[rule_id][0 if violation else 1] += 1
            elif violation:
                per_rule[rule_id][2] += 1
        out.update(source="labels", labels=n_labels)
    rules = [{"rule_id": rid, **_prf(*counts)} for rid, counts in per_rule.items()]
    totals = [sum(c[i] for c in per_rule.values()) for i in range(3)]
    out.update(rules=rules, micro=_prf(*totals))
    return out
