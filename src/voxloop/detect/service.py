"""Services of the detect domain: NAB evaluation, count series, surges, pipeline stage."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine, or_, select
from sqlalchemy.orm import Session

from voxloop.config import Settings
from voxloop.detect import nab
from voxloop.detect.alerts import SurgeAlert, scan_counts
from voxloop.detect.anomaly import nab_detector, nab_round

# The voices query lives in the light module Spark workers import (re-exported here).
from voxloop.detect.counts import read_voices as read_voices
from voxloop.detect.counts import voices_sql
from voxloop.detect.models import Alert, Problem, ProblemEdit, ProblemMember
from voxloop.detect.notify import alert_payload, deliver_outbox, record_alerts
from voxloop.detect.problems import (
    ProblemGrouper,
    block_keys,
    context_tokens,
    distinct_cases,
    keywords,
    place_words,
    problem_title,
)
from voxloop.detect.series import (
    GRANULARITY_SECONDS,
    LOCAL_OFFSET_S,
    count_voices,
    load_counts,
    merge_counts,
    save_counts,
)
from voxloop.detect.surge import SurgeDetector
from voxloop.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    UnusableInputError,
)
from voxloop.store.access import Principal
from voxloop.store.models import PipelineState
from voxloop.store.service import lake_connection, make_engine, make_sessionmaker, part_files

SHANGHAI = ZoneInfo("Asia/Shanghai")


class LinkOrders(Protocol):
    """Link a run's new voices to the work orders of their problems; return reopened ids."""

    def __call__(
        self, *, session: Session, voices: pa.Table, since: datetime | None = None
    ) -> list[str]: ...


def nab_scores(*, files: list[nab.NabFile], detector: str) -> list[nab.FloatArray]:
    """Run a fresh detector online over every NAB file; return the anomaly scores.

    Scores are rounded to 12 significant digits like NAB's result files, so a detector
    ported from NAB reproduces its published counts exactly.
    """
    out: list[nab.FloatArray] = []
    for f in files:
        det = nab_detector(detector, values=f.values, probation=f.probation)
        scores = det.score_learn_many(f.values)
        out.append(nab_round(scores))
    return out


def evaluate_nab(
    *, data_dir: Path, detector: str = "context_ensemble", names: list[str] | None = None
) -> dict[str, nab.CorpusResult]:
    """Score ``detector`` on the NAB corpus (or the named files) under the three profiles."""
    files = nab.load_corpus(data_dir, names=names)
    scores = nab_scores(files=files, detector=detector)
    return {name: nab.score_corpus(files, scores, name) for name in nab.PROFILES}


# ---------------------------------------------------------------------------
# Pipeline stage: count new voices, detect surges, raise alerts, group problems.

STAGE = "detect"
#: Granularity the pipeline stage maintains and alerts on.
STAGE_GRANULARITY = "hour"


def state_dir(settings: Settings) -> Path:
    """Return the folder holding the detect stage's incremental state."""
    return settings.home / "detect"


def _load_state(session: Session) -> dict[str, Any]:
    row = session.get(PipelineState, STAGE)
    return json.loads(row.state) if row else {}


def _save_state(session: Session, state: dict[str, Any]) -> None:
    row = session.get(PipelineState, STAGE)
    if row is None:
        session.add(PipelineState(stage=STAGE, state=json.dumps(state)))
    else:
        row.state = json.dumps(state)


def typical_cases(
    voices: pa.Table, alert: SurgeAlert, *, granularity: str = STAGE_GRANULARITY, limit: int = 3
) -> list[dict[str, Any]]:
    """Return up to ``limit`` distinct voices of the alert's root cause and windows.

    The pool is the latest ``TYPICAL_POOL`` voices of the surge; duplicates are dropped
    and diverse representatives picked (``voxloop.detect.problems.distinct_cases``),
    listed latest first.
    """
    if voices.num_rows == 0:
        return []
    values = alert.values
    width = GRANULARITY_SECONDS[granularity]
    seconds = pc.cast(voices["received_at"], pa.int64()).to_numpy() // 1_000_000
    buckets = (seconds + LOCAL_OFFSET_S) // width
    mask = (buckets >= alert.first_bucket) & (buckets <= alert.last_bucket)
    for dim, value in values.items():
        if dim in voices.column_names:
            col = np.asarray(voices[dim].to_pylist(), dtype=object)
            mask &= col == (None if value == "?" else value)
    pool = np.flatnonzero(mask)[-TYPICAL_POOL:][::-1]
    ids = voices["id"].to_pylist()
    texts = voices["text"].to_pylist()
    picked = distinct_cases([texts[i] or "" for i in pool], k=limit)
    return [{"voice_id": ids[pool[j]], "text": texts[pool[j]]} for j in sorted(picked)]


def update_series(
    *,
    settings: Settings,
    voices: pa.Table,
    granularity: str = STAGE_GRANULARITY,
    write_to: Path | None = None,
) -> pa.Table:
    """Add new voices to the saved count series; return the whole count table.

    ``write_to`` names another file for the updated series (the stage writes a pending
    file and publishes it only after its database commit).
    """
    path = state_dir(settings) / f"counts_{granularity}.parquet"
    counts = load_counts(path)
    if voices.num_rows:
        counts = merge_counts(counts, count_voices(voices, granularity=granularity))
        save_counts(write_to or path, counts)
    return counts


def rebuild_series(*, settings: Settings, granularity: str = STAGE_GRANULARITY) -> int:
    """Recount every voice in the lake into fresh count series; return the row count."""
    voices = read_voices(settings=settings, files=part_files(settings, "voices"))
    counts = count_voices(voices, granularity=granularity) if voices.num_rows else None
    if counts is None:
        return 0
    save_counts(state_dir(settings) / f"counts_{granularity}.parquet", counts)
    return int(counts.num_rows)


def detect_stage(*, settings: Settings, link_orders: LinkOrders | None = None) -> dict[str, Any]:
    """Pipeline stage: update series, detect surges, raise alerts, group new voices.

    ``link_orders`` (``voxloop.act.sources.link_to_problem_orders`` in the pipeline) runs
    after the stage's commit on the new voices and the run's start; it returns the ids of
    the work orders it reopened.  Detection sits below the act domain, so the caller
    passes it in rather than detection importing it.
    """
    from filelock import FileLock

    folder = state_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    # Two ingests finishing together must not count the same new parts twice.
    with FileLock(str(folder / "detect.lock")):
        engine = make_engine(settings)
        try:
            return _detect_stage_locked(settings, engine, link_orders)
        finally:
            # The stage also runs inside the server after pushes: release its pool.
            engine.dispose()


_PENDING = ".pending-"


def _pending(path: Path, token: str) -> Path:
    return path.with_name(f"{path.name}{_PENDING}{token}")


def _settle_pending(folder: Path, committed: str | None) -> None:
    """Publish the files of the last committed run; discard those of a run that died.

    The stage's files (count series, detector and grouper state) and its database rows
    (processed parts, alerts, problem members) cannot share one transaction. Files are
    written as ``<name>.pending-<token>`` and the token is committed with the rows; so a
    crash before the commit leaves only files to throw away, and a crash between the
    commit and the renames leaves files that the next run publishes. Either way no voice
    is counted twice or lost.
    """
    for pending in folder.glob(f"*{_PENDING}*"):
        name, _, token = pending.name.rpartition(_PENDING)
        if committed is not None and token == committed:
            pending.replace(pending.with_name(name))
        else:
            pending.unlink(missing_ok=True)


def _detect_stage_locked(
    settings: Settings, engine: Engine, link_orders: LinkOrders | None
) -> dict[str, Any]:
    run_started = datetime.now(UTC)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        state = _load_state(session)
    folder = state_dir(settings)
    _settle_pending(folder, state.get("token"))
    done = set(state.get("parts", []))
    files = [p for p in part_files(settings, "voices") if p.name not in done]
    voices = read_voices(settings=settings, files=files)
    token = hashlib.sha256(
        f"{datetime.now(UTC).isoformat()}|{sorted(p.name for p in files)}".encode()
    ).hexdigest()[:16]
    counts_path = folder / f"counts_{STAGE_GRANULARITY}.parquet"
    counts = update_series(settings=settings, voices=voices, write_to=_pending(counts_path, token))
    det_path = folder / f"surge_{STAGE_GRANULARITY}.npz"
    detector = (
        SurgeDetector.load(det_path)
        if det_path.is_file()
        else SurgeDetector(granularity=STAGE_GRANULARITY)
    )
    alerts: list[SurgeAlert] = []
    detector.add_series([])
    if counts.num_rows:
        first = max(int(detector.bucket_) + 1, int(pc.min(counts["bucket"]).as_py()))
        last = int(pc.max(counts["bucket"]).as_py())
        if detector.n_ == 0:
            detector.bucket_ = first - 1
        if last >= first:
            alerts = scan_counts(counts, detector=detector, first=first, last=last)
        detector.save(_pending(det_path, token))
    typical = {a.root_cause: typical_cases(voices, a) for a in alerts}
    with sessions.begin() as session:
        stored = record_alerts(
            session=session,
            alerts=alerts,
            granularity=STAGE_GRANULARITY,
            webhook_url=settings.detect_webhook_url,
            typical=typical,
        )
        grouped = group_voices(
            session=session,
            settings=settings,
            voices=voices,
            grouper_out=_pending(_grouper_path(settings), token),
        )
        _save_state(session, {"parts": sorted(done | {p.name for p in files}), "token": token})
    _settle_pending(folder, token)
    # Every run retries what earlier runs could not deliver, not only this run's alerts.
    delivery = deliver_outbox(sessions=sessions)
    reopened: list[str] = []
    if link_orders is not None:
        with sessions() as session:
            reopened = link_orders(session=session, voices=voices, since=run_started)
    return {
        "voices": int(voices.num_rows),
        "series": len(detector.series_),
        "alerts": len({a.id for a in stored}),
        "problems_touched": grouped["problems"],
        "orders_reopened": len(reopened),
        "webhooks": delivery,
    }


# ---------------------------------------------------------------------------
# Problems: grouping, states, merge and split.


def _grouper_path(settings: Settings) -> Path:
    return state_dir(settings) / "grouper.npz"


def problem_state(
    daily: dict[str, int], *, today: date, first_seen: date, previous: str | None
) -> str:
    """Classify a problem from its daily counts: new/ongoing/escalating/resolved/regressed.

    Resolved: no voice for 7 days.  Regressed: voices again after being resolved.
    Escalating: the last 2 days hold at least 5 voices and twice the daily rate of the
    previous 14.  New: first seen in the last 2 days.
    """

    def total(lo: int, hi: int) -> int:
        return sum(n for d, n in daily.items() if lo <= (today - date.fromisoformat(d)).days < hi)

    if total(0, 7) == 0:
        return "resolved"
    if previous == "resolved":
        return "regressed"
    if (today - first_seen).days < 2:
        return "new"
    recent, before = total(0, 2), total(2, 16)
    if recent >= 5 and recent / 2 >= 2 * max(before / 14, 0.5):
        return "escalating"
    return "ongoing"


def group_voices(
    *, session: Session, settings: Settings, voices: pa.Table, grouper_out: Path | None = None
) -> dict[str, int]:
    """Group new voices into problems (human assignments and merges are respected).

    ``grouper_out`` names another file for the updated grouper state (see ``update_series``).
    """
    if voices.num_rows == 0:
        return {"voices": 0, "problems": 0}
    path = _grouper_path(settings)
    grouper = ProblemGrouper.load(path) if path.is_file() else ProblemGrouper()
    ids = voices["id"].to_pylist()
    known = set(
        session.scalars(select(ProblemMember.voice_id).where(ProblemMember.voice_id.in_(ids)))
    )
    keep = np.array([i not in known for i in ids], dtype=bool)
    table = voices.filter(pa.array(keep))
    if table.num_rows == 0:
        return {"voices": 0, "problems": 0}
    texts = [t or "" for t in table["text"].to_pylist()]
    problem_ids, sims = grouper.partial_fit_assign(
        texts,
        block_keys(table, grouper.block_by),
        table["id"].to_pylist(),
        context_tokens(table),
    )
    grouper.save(grouper_out or path)
    merged: dict[str, str] = {
        pid: into
        for pid, into in session.execute(
            select(Problem.id, Problem.merged_into).where(Problem.merged_into.is_not(None))
        ).all()
        if into is not None
    }
    now = datetime.now(UTC)
    touched: set[str] = set()
    for vid, pid, sim in zip(table["id"].to_pylist(), problem_ids, sims, strict=True):
        while pid in merged:
            pid = merged[pid]
        session.add(
            ProblemMember(
                voice_id=vid, problem_id=pid, source="auto", similarity=float(sim), assigned_at=now
            )
        )
        touched.add(pid)
    session.flush()
    refresh_problems(session=session, problem_ids=sorted(touched), voices=table, grouper=grouper)
    return {"voices": int(table.num_rows), "problems": len(touched)}


def refresh_problems(
    *,
    session: Session,
    problem_ids: list[str],
    voices: pa.Table,
    grouper: ProblemGrouper | None = None,
) -> None:
    """Recompute title, keywords, counts, regions, typical cases and state of problems."""
    if not problem_ids:
        return
    config = (grouper or ProblemGrouper()).config_version
    rows = {
        "id": voices["id"].to_pylist(),
        "text": voices["text"].to_pylist(),
        "at": voices["received_at"].to_pylist(),
        "customer": voices["customer_id"].to_pylist(),
        "scenario": voices["scenario"].to_pylist(),
        "province": voices["province"].to_pylist(),
        "city": voices["city"].to_pylist(),
        "district": (
            voices["district"].to_pylist()
            if "district" in voices.column_names
            else [None] * voices.num_rows
        ),
    }
    by_voice = {v: i for i, v in enumerate(rows["id"])}
    for pid in problem_ids:
        members = session.scalars(
            select(ProblemMember).where(ProblemMember.problem_id == pid)
        ).all()
        idx = [by_voice[m.voice_id] for m in members if m.voice_id in by_voice]
        problem = session.get(Problem, pid)
        if problem is None:
            if not idx:
                continue
            first = min(rows["at"][i] for i in idx)
            problem = Problem(
                id=pid,
                title="",
                config_version=config,
                first_seen=first,
                last_seen=first,
                state="new",
                keywords_json="[]",
                n_voices=0,
                n_customers=0,
                typical_json="[]",
                daily_json="{}",
                regions_json="{}",
                updated_at=datetime.now(UTC),
            )
            session.add(problem)
        if not idx:
            continue
        daily: dict[str, int] = json.loads(problem.daily_json or "{}")
        regions: dict[str, int] = json.loads(problem.regions_json or "{}")
        for i in idx:
            day = rows["at"][i].astimezone(SHANGHAI).date().isoformat()
            daily[day] = daily.get(day, 0) + 1
            place = "/".join(x for x in (rows["province"][i], rows["city"][i]) if x)
            regions[place or "?"] = regions.get(place or "?", 0) + 1
        texts = [rows["text"][i] or "" for i in idx]
        places = place_words(rows[col][i] for col in ("province", "city", "district") for i in idx)
        words = keywords(texts + json.loads(problem.keywords_json or "[]"), exclude=places)
        scen = Counter(rows["scenario"][i] for i in idx).most_common(1)[0][0]
        sims = {m.voice_id: m.similarity for m in members}
        cases = _distinct_typical(
            [(rows["id"][i], rows["text"][i]) for i in idx],
            json.loads(problem.typical_json or "[]"),
            sims,
        )
        previous = problem.state
        # The title reads the new voices and the cases that already represent the problem.
        problem.title = problem_title(
            texts + [c["text"] or "" for c in cases if c["voice_id"] not in by_voice],
            scenario=scen,
            words=words,
            exclude=places,
        )[:300]
        problem.keywords_json = json.dumps(words, ensure_ascii=False)
        problem.scenario = scen
        top_place = max(regions, key=lambda k: regions[k])
        parts = top_place.split("/")
        problem.province = parts[0] if parts and parts[0] != "?" else None
        problem.city = parts[1] if len(parts) > 1 else None
        problem.n_voices = len(members)
        customers = {rows["customer"][i] for i in idx if rows["customer"][i]}
        problem.n_customers += len(customers)
        problem.first_seen = min(problem.first_seen, min(rows["at"][i] for i in idx))
        problem.last_seen = max(problem.last_seen, max(rows["at"][i] for i in idx))
        problem.daily_json = json.dumps(dict(sorted(daily.items())))
        problem.regions_json = json.dumps(regions, ensure_ascii=False)
        if cases:
            problem.typical_json = json.dumps(cases, ensure_ascii=False)
        today = problem.last_seen.astimezone(SHANGHAI).date()
        problem.state = problem_state(
            daily,
            today=today,
            first_seen=problem.first_seen.astimezone(SHANGHAI).date(),
            previous=previous if previous != "new" else None,
        )
        problem.updated_at = datetime.now(UTC)


#: Most similar voices considered when picking a problem's distinct typical cases.
TYPICAL_POOL = 40


def _distinct_typical(
    voices: Sequence[tuple[str, str | None]],
    current: Sequence[dict[str, Any]],
    sims: Mapping[str, float],
    *,
    k: int = 3,
) -> list[dict[str, Any]]:
    """Return ``k`` distinct typical cases from new voices and the current cases.

    The pool is the current cases plus the ``TYPICAL_POOL`` new voices most similar to
    the problem; :func:`voxloop.detect.problems.distinct_cases` drops duplicates and
    picks diverse representatives by maximal marginal relevance.
    """
    pool: dict[str, str | None] = {}
    for case in current:
        pool.setdefault(str(case.get("voice_id")), case.get("text"))
    ranked = sorted(voices, key=lambda v: (-sims.get(v[0], 0.0), v[0]))[:TYPICAL_POOL]
    for vid, text in ranked:
        pool.setdefault(vid, text)
    ids = list(pool)
    if not ids:
        return []
    picked = distinct_cases(
        [pool[v] or "" for v in ids], k=k, relevance=[sims.get(v, 0.0) for v in ids]
    )
    return [{"voice_id": ids[i], "text": pool[ids[i]]} for i in picked]


def merge_problems(
    *,
    session: Session,
    target: str,
    sources: list[str],
    actor: str | None = None,
    principal: Principal | None = None,
) -> Problem:
    """Merge ``sources`` into ``target``; remembered so later voices follow the merge.

    With a ``principal``, every problem involved must lie wholly inside its region scope
    (see ``problem_within``), else ``PermissionDeniedError``.
    """
    problem = session.get(Problem, target)
    if problem is None:
        raise NotFoundError(f"problem {target} not found")
    if principal is not None:
        _require_within(problem, principal)
    if problem.merged_into is not None:
        raise ConflictError(f"problem {target} was merged into {problem.merged_into}")
    sources = list(dict.fromkeys(sources))  # merging one problem twice would double-count it
    for pid in sources:
        src = session.get(Problem, pid)
        if src is None:
            raise NotFoundError(f"problem {pid} not found")
        if pid == target:
            raise ConflictError(f"cannot merge problem {pid} into itself")
        if src.merged_into is not None:
            raise ConflictError(f"problem {pid} was already merged into {src.merged_into}")
        if principal is not None:
            _require_within(src, principal)
        for m in session.scalars(select(ProblemMember).where(ProblemMember.problem_id == pid)):
            m.problem_id, m.source = target, "human"
        src.merged_into = target
        src.state = "merged"
        daily = json.loads(problem.daily_json)
        for d, n in json.loads(src.daily_json).items():
            daily[d] = daily.get(d, 0) + n
        problem.daily_json = json.dumps(dict(sorted(daily.items())))
        # The places travel with the voices: region-scoped views depend on them.
        regions: dict[str, int] = json.loads(problem.regions_json or "{}")
        for place, n in json.loads(src.regions_json or "{}").items():
            regions[place] = regions.get(place, 0) + n
        problem.regions_json = json.dumps(regions, ensure_ascii=False)
        problem.n_customers += src.n_customers
        problem.first_seen = min(problem.first_seen, src.first_seen)
        problem.last_seen = max(problem.last_seen, src.last_seen)
    problem.n_voices = len(
        session.scalars(select(ProblemMember).where(ProblemMember.problem_id == target)).all()
    )
    session.add(
        ProblemEdit(
            kind="merge",
            payload=json.dumps({"target": target, "sources": sources}),
            actor=actor,
            created_at=datetime.now(UTC),
        )
    )
    return problem


def split_problem(
    *,
    session: Session,
    problem_id: str,
    voice_ids: list[str],
    actor: str | None = None,
    principal: Principal | None = None,
    voices: Mapping[str, LakeVoice] | None = None,
) -> Problem:
    """Move ``voice_ids`` out of a problem into a new one; remembered as human edits.

    With a ``principal``, the problem must lie wholly inside its region scope.  ``voices``
    (from ``lake_voices``) lets the daily and per-place counts and the typical cases
    follow the moved voices; without it the new problem starts with empty ones.
    """
    problem = session.get(Problem, problem_id)
    if problem is None:
        raise NotFoundError(f"problem {problem_id} not found")
    if principal is not None:
        _require_within(problem, principal)
    members = session.scalars(
        select(ProblemMember).where(
            ProblemMember.problem_id == problem_id, ProblemMember.voice_id.in_(voice_ids)
        )
    ).all()
    missing = sorted(set(voice_ids) - {m.voice_id for m in members})
    if missing:
        raise NotFoundError(f"voices {missing[:5]} are not in problem {problem_id}")
    if len(members) == problem.n_voices:
        raise ConflictError("a split must leave at least one voice in the problem")
    raw = f"split|{problem_id}|{','.join(sorted(voice_ids))}"
    new_id = "p-" + hashlib.sha1(raw.encode()).hexdigest()[:12]
    for m in members:
        m.problem_id, m.source = new_id, "human"
    new = Problem(
        id=new_id,
        title=f"{problem.title} (split)",
        keywords_json=problem.keywords_json,
        scenario=problem.scenario,
        province=problem.province,
        city=problem.city,
        state="new",
        config_version=problem.config_version,
        n_voices=len(members),
        n_customers=0,
        first_seen=problem.first_seen,
        last_seen=problem.last_seen,
        typical_json=json.dumps([]),
        daily_json="{}",
        regions_json="{}",
        updated_at=datetime.now(UTC),
    )
    session.add(new)
    problem.n_voices -= len(members)
    if voices:
        _move_counts(problem, new, [m for m in members if m.voice_id in voices], voices)
    session.add(
        ProblemEdit(
            kind="split",
            payload=json.dumps({"problem": problem_id, "new": new_id, "voices": voice_ids}),
            actor=actor,
            created_at=datetime.now(UTC),
        )
    )
    return new


def problem_payload(problem: Problem, *, detail: bool = False) -> dict[str, Any]:
    """Return the JSON view of a problem."""
    out: dict[str, Any] = {
        "id": problem.id,
        "title": problem.title,
        "keywords": json.loads(problem.keywords_json),
        "scenario": problem.scenario,
        "province": problem.province,
        "city": problem.city,
        "state": problem.state,
        "n_voices": problem.n_voices,
        "n_customers": problem.n_customers,
        "first_seen": problem.first_seen.isoformat(),
        "last_seen": problem.last_seen.isoformat(),
        "config_version": problem.config_version,
        "merged_into": problem.merged_into,
    }
    if detail:
        out["typical_cases"] = json.loads(problem.typical_json)
        out["daily"] = json.loads(problem.daily_json)
        out["regions"] = json.loads(problem.regions_json)
    return out


# ---------------------------------------------------------------------------
# Region scope: what a regional user (province or province/city) sees and may change.
#
# * A problem is visible when at least one of its voices lies in the caller's region (its
#   per-place counts name a place inside it).  The caller sees it restricted to that
#   region: voice and customer counts, daily counts, places, first/last seen, typical
#   cases and voice ids are recomputed from the member voices inside the region (read
#   from the lake).  Title, keywords, scenario and state describe the whole problem.
# * Merge and split change what every region sees, so every problem involved must lie
#   wholly inside the caller's region (403 otherwise).
# * An alert's region is the province/city of its root cause (none: a national alert).
#   It is visible when that region and the caller's are nested (national and provincial
#   alerts reach the cities below them; another province's or city's alerts do not).
#   Counts are the root cause's own (aggregates, national for a national alert); typical
#   cases are cut to voices inside the caller's region.  Acknowledging or closing needs
#   the root cause inside the caller's region: a province cannot close a national alert.


@dataclass(frozen=True)
class LakeVoice:
    """What region-scoped views need of a voice: place, customer, time and text."""

    province: str | None
    city: str | None
    customer_id: str | None
    received_at: datetime
    text: str | None

    @property
    def place(self) -> str:
        """Return the ``province/city`` key that ``Problem.regions_json`` counts by."""
        return "/".join(x for x in (self.province, self.city) if x) or "?"


def lake_voices(
    *, settings: Settings, voice_ids: Sequence[str], principal: Principal | None = None
) -> dict[str, LakeVoice]:
    """Return the latest lake version of each voice, only those the principal sees."""
    ids = sorted(set(voice_ids))
    if not ids or not part_files(settings, "voices"):
        return {}
    con = lake_connection(settings, ("voices",))
    try:
        con.register("wanted", pa.table({"id": pa.array(ids, pa.string())}))
        rows = con.execute(
            "SELECT v.id, v.province, v.city, v.customer_id, epoch_us(v.received_at), v.text "
            "FROM voices v SEMI JOIN wanted w ON v.id = w.id "
            "QUALIFY row_number() OVER (PARTITION BY v.id ORDER BY v.ingested_at DESC) = 1"
        ).fetchall()
    finally:
        con.close()
    out: dict[str, LakeVoice] = {}
    for vid, province, city, customer, at_us, text in rows:
        if principal is not None and not principal.sees(province, city):
            continue
        at = datetime.fromtimestamp(int(at_us) / 1e6, tz=UTC)
        out[str(vid)] = LakeVoice(province, city, customer, at, text)
    return out


def _place_region(place: str) -> tuple[str | None, str | None]:
    province, _, city = place.partition("/")
    return (province if province not in ("", "?") else None), (city or None)


def problem_visible(problem: Problem, principal: Principal) -> bool:
    """Return whether any voice of the problem lies in the principal's region."""
    if principal.province is None:
        return True
    places = json.loads(problem.regions_json or "{}")
    return any(principal.sees(*_place_region(p)) for p in places)


def problem_within(problem: Problem, principal: Principal) -> bool:
    """Return whether every voice of the problem lies in the principal's region."""
    if principal.province is None:
        return True
    places = json.loads(problem.regions_json or "{}")
    return bool(places) and all(principal.sees(*_place_region(p)) for p in places)


def _require_within(problem: Problem, principal: Principal) -> None:
    if not problem_within(problem, principal):
        raise PermissionDeniedError(
            f"problem {problem.id} has voices outside your region scope; "
            "only a user whose scope covers all of them may merge or split it"
        )


def _like_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


#: Orders of the problem list: most recently seen first, or most voices first.
PROBLEM_SORTS = ("last_seen", "voices")


def list_problems(
    *,
    session: Session,
    principal: Principal,
    state: str | None = None,
    scenario: str | None = None,
    limit: int = 100,
    sort: str = "last_seen",
) -> list[Problem]:
    """Return the problems visible to the principal, most recently seen (or largest) first.

    Merged problems are listed only when asked for by ``state``. ``sort="voices"`` orders
    by the problem's total voices (for a regional caller, its whole count, not the share
    in its region).
    """
    if sort not in PROBLEM_SORTS:
        raise UnusableInputError(f"sort must be one of {', '.join(PROBLEM_SORTS)}, got {sort!r}")
    order = (
        (Problem.n_voices.desc(), Problem.last_seen.desc(), Problem.id)
        if sort == "voices"
        else (Problem.last_seen.desc(), Problem.id)
    )
    query = select(Problem).order_by(*order)
    if state:
        query = query.where(Problem.state == state)
    else:
        query = query.where(Problem.merged_into.is_(None))
    if scenario:
        query = query.where(Problem.scenario == scenario)
    if principal.province is None:
        return list(session.scalars(query.limit(limit)))
    # The LIKE is only a cheap necessary condition on the JSON keys ("province/city");
    # problem_visible decides.
    key = principal.province + (f'/{principal.city}"' if principal.city else "")
    query = query.where(Problem.regions_json.like(f'%"{_like_literal(key)}%', escape="\\"))
    out: list[Problem] = []
    for problem in session.scalars(query.execution_options(yield_per=500)):
        if problem_visible(problem, principal):
            out.append(problem)
            if len(out) >= limit:
                break
    return out


def problem_views(
    *,
    settings: Settings,
    session: Session,
    principal: Principal,
    problems: Sequence[Problem],
    detail: bool = False,
) -> list[dict[str, Any]]:
    """Return the JSON views of problems as the principal may see them.

    A national principal gets the stored problems; a regional one gets them restricted
    to its region (see the rules above).  ``detail`` adds typical cases, daily counts,
    places and voice ids.
    """
    ids = [p.id for p in problems]
    members = (
        session.execute(
            select(ProblemMember.problem_id, ProblemMember.voice_id, ProblemMember.similarity)
            .where(ProblemMember.problem_id.in_(ids))
            .order_by(ProblemMember.voice_id)
        ).all()
        if ids and (detail or principal.province is not None)
        else []
    )
    if principal.province is None:
        out = [problem_payload(p, detail=detail) for p in problems]
        if detail:
            for view in out:
                view["voice_ids"] = [m.voice_id for m in members if m.problem_id == view["id"]]
        return out
    facts = lake_voices(
        settings=settings, voice_ids=[m.voice_id for m in members], principal=principal
    )
    mine: dict[str, list[tuple[str, float]]] = {}
    for pid, vid, sim in members:
        if vid in facts:
            mine.setdefault(pid, []).append((vid, float(sim)))
    return [
        _restricted_payload(p, mine.get(p.id, []), facts, principal, detail=detail)
        for p in problems
    ]


def _restricted_payload(
    problem: Problem,
    members: list[tuple[str, float]],
    facts: Mapping[str, LakeVoice],
    principal: Principal,
    *,
    detail: bool,
) -> dict[str, Any]:
    out = problem_payload(problem, detail=False)
    voices = [facts[vid] for vid, _ in members]
    places = Counter(v.place for v in voices)
    top = places.most_common(1)[0][0] if places else None
    province, city = _place_region(top) if top else (principal.province, principal.city)
    out.update(
        n_voices=len(voices),
        n_customers=len({v.customer_id for v in voices if v.customer_id}),
        province=province,
        city=city,
        scope={"province": principal.province, "city": principal.city},
    )
    if voices:
        out["first_seen"] = min(v.received_at for v in voices).isoformat()
        out["last_seen"] = max(v.received_at for v in voices).isoformat()
    if detail:
        out["typical_cases"] = _distinct_typical(
            [(vid, facts[vid].text) for vid, _ in members], [], dict(members)
        )
        out["daily"] = dict(
            sorted(
                Counter(
                    v.received_at.astimezone(SHANGHAI).date().isoformat() for v in voices
                ).items()
            )
        )
        out["regions"] = dict(places)
        out["voice_ids"] = sorted(vid for vid, _ in members)
    return out


def _move_counts(
    old: Problem, new: Problem, moved: list[ProblemMember], voices: Mapping[str, LakeVoice]
) -> None:
    """Move the daily and per-place counts and typical cases of moved voices to ``new``."""
    tallies: list[tuple[str, Counter[str]]] = [
        (
            "daily_json",
            Counter(
                voices[m.voice_id].received_at.astimezone(SHANGHAI).date().isoformat()
                for m in moved
            ),
        ),
        ("regions_json", Counter(voices[m.voice_id].place for m in moved)),
    ]
    for column, counts in tallies:
        kept: dict[str, int] = json.loads(getattr(old, column) or "{}")
        for key, n in counts.items():
            left = kept.get(key, 0) - n
            if left > 0:
                kept[key] = left
            else:
                kept.pop(key, None)
        setattr(old, column, json.dumps(dict(sorted(kept.items())), ensure_ascii=False))
        setattr(new, column, json.dumps(dict(sorted(counts.items())), ensure_ascii=False))
    gone = {m.voice_id for m in moved}
    old.typical_json = json.dumps(
        [c for c in json.loads(old.typical_json or "[]") if c.get("voice_id") not in gone],
        ensure_ascii=False,
    )
    new.typical_json = json.dumps(
        _distinct_typical(
            [(m.voice_id, voices[m.voice_id].text) for m in moved],
            [],
            {m.voice_id: m.similarity for m in moved},
        ),
        ensure_ascii=False,
    )
    new.n_customers = len({voices[m.voice_id].customer_id for m in moved} - {None})


def alert_region(alert: Alert) -> tuple[str | None, str | None]:
    """Return the province and city of an alert's root cause (``None``: not fixed)."""
    values: dict[str, str] = json.loads(alert.values_json or "{}")
    return values.get("province"), values.get("city")


def alert_visible(alert: Alert, principal: Principal) -> bool:
    """Return whether the alert's region and the principal's are nested."""
    if principal.province is None:
        return True
    province, city = alert_region(alert)
    if province is None:
        return True
    if province != principal.province:
        return False
    return city is None or principal.city is None or city == principal.city


def alert_within(alert: Alert, principal: Principal) -> bool:
    """Return whether the alert's root cause lies inside the principal's region."""
    if principal.province is None:
        return True
    return principal.sees(*alert_region(alert))


def list_alerts(
    *, session: Session, principal: Principal, state: str | None = None, limit: int = 100
) -> list[Alert]:
    """Return the alerts visible to the principal, newest first."""
    query = select(Alert).order_by(Alert.first_bucket.desc(), Alert.id.desc())
    if state:
        query = query.where(Alert.state == state)
    if principal.province is None:
        return list(session.scalars(query.limit(limit)))
    # Root-cause keys list dimensions in a fixed order (see detect.series): a cheap
    # necessary condition in SQL, then alert_visible decides.
    mine = f"%province={_like_literal(principal.province)}"
    query = query.where(
        or_(
            ~Alert.root_cause.like("%province=%"),
            Alert.root_cause.like(mine, escape="\\"),
            Alert.root_cause.like(f"{mine}|%", escape="\\"),
        )
    )
    out: list[Alert] = []
    for alert in session.scalars(query.execution_options(yield_per=500)):
        if alert_visible(alert, principal):
            out.append(alert)
            if len(out) >= limit:
                break
    return out


def alert_views(
    *, settings: Settings, principal: Principal, alerts: Sequence[Alert]
) -> list[dict[str, Any]]:
    """Return the JSON views of alerts, typical cases cut to the principal's region."""
    out = [alert_payload(a) for a in alerts]
    wider = [i for i, a in enumerate(alerts) if not alert_within(a, principal)]
    if not wider:
        return out
    ids = [c["voice_id"] for i in wider for c in out[i]["typical_cases"]]
    seen = lake_voices(settings=settings, voice_ids=ids, principal=principal)
    for i in wider:
        out[i]["typical_cases"] = [c for c in out[i]["typical_cases"] if c["voice_id"] in seen]
    return out


# ---------------------------------------------------------------------------
# Actions where the data is: work orders from a problem or an alert.
#
# An order opened from a problem (``source_kind="problem"``, ``source_ref`` = problem id)
# or an alert (``source_kind="alert"``, ``source_ref="alert:<id>"``) covers the voices of
# that source inside the caller's region scope, with their customers; it is routed by the
# act routing rules like any other order.  Later voices of the problem are linked by the
# detect stage (``link_to_problem_orders``) and reopen a fixed order as regressed.

#: Most voices a problem or alert order links at creation.
MAX_ORDER_VOICES = 20_000
#: Voices an alert order reads from the lake at most.
ALERT_SOURCE_PREFIX = "alert:"


@dataclass(frozen=True)
class ActionSource:
    """What an order is opened from: a problem or an alert, as the caller sees it."""

    kind: str  # "problem" | "alert"
    ref: str  # problem id | "alert:<id>"
    title: str
    scenario: str | None
    state: str
    n_voices: int
    n_customers: int
    voice_ids: list[str]
    typical_cases: list[dict[str, Any]]
    first_seen: str | None
    last_seen: str | None


def problem_source(
    *,
    settings: Settings,
    session: Session,
    principal: Principal,
    problem_id: str,
    view: Mapping[str, Any] | None = None,
) -> ActionSource:
    """Return a visible problem as an order source (its voices inside the caller's region).

    ``view`` is the problem's detailed view for this principal when the caller has it.
    """
    problem = session.get(Problem, problem_id)
    if problem is None or not problem_visible(problem, principal):
        raise NotFoundError(f"problem {problem_id} not found")
    if view is None:
        view = problem_views(
            settings=settings,
            session=session,
            principal=principal,
            problems=[problem],
            detail=True,
        )[0]
    return ActionSource(
        kind="problem",
        ref=problem.id,
        title=view["title"],
        scenario=view["scenario"],
        state=view["state"],
        n_voices=int(view["n_voices"]),
        n_customers=int(view["n_customers"]),
        voice_ids=list(view["voice_ids"]),
        typical_cases=list(view["typical_cases"]),
        first_seen=view["first_seen"],
        last_seen=view["last_seen"],
    )


def alert_voice_ids(
    *, settings: Settings, alert: Alert, principal: Principal, limit: int = MAX_ORDER_VOICES
) -> list[str]:
    """Return the voices behind an alert: its root cause's voices in its windows, in scope."""
    from voxloop.detect.series import GRANULARITY_SECONDS as WIDTHS

    files = part_files(settings, "voices")
    if not files:
        return []
    width = WIDTHS.get(alert.granularity, 3600)
    lo = alert.first_bucket * width - LOCAL_OFFSET_S
    hi = (alert.last_bucket + 1) * width - LOCAL_OFFSET_S
    values: dict[str, str] = json.loads(alert.values_json or "{}")
    where = ["epoch(received_at) >= ?", "epoch(received_at) < ?"]
    params: list[Any] = [lo, hi]
    for dim in ("scenario", "province", "city", "district", "channel"):
        if dim in values:
            if values[dim] == "?":
                where.append(f"{dim} IS NULL")
            else:
                where.append(f"{dim} = ?")
                params.append(values[dim])
    has_readings = bool(part_files(settings, "readings"))
    con = lake_connection(settings, ("readings",) if has_readings else ())
    try:
        rows = con.execute(
            f"SELECT id, province, city FROM ({voices_sql(files, has_readings)}) "
            f"WHERE {' AND '.join(where)} "
            "QUALIFY row_number() OVER (PARTITION BY id) = 1 ORDER BY received_at, id",
            params,
        ).fetchall()
    finally:
        con.close()
    return [str(r[0]) for r in rows if principal.sees(r[1], r[2])][:limit]


def alert_source(
    *, settings: Settings, session: Session, principal: Principal, alert_id: int
) -> ActionSource:
    """Return a visible alert as an order source (its voices inside the caller's region)."""
    alert = session.get(Alert, alert_id)
    if alert is None or not alert_visible(alert, principal):
        raise NotFoundError(f"alert {alert_id} not found")
    view = alert_views(settings=settings, principal=principal, alerts=[alert])[0]
    ids = alert_voice_ids(settings=settings, alert=alert, principal=principal)
    facts = lake_voices(settings=settings, voice_ids=ids, principal=principal)
    values: dict[str, str] = view["values"]
    title = " · ".join(str(v) for v in values.values()) or "*"
    return ActionSource(
        kind="alert",
        ref=f"{ALERT_SOURCE_PREFIX}{alert.id}",
        title=title,
        scenario=values.get("scenario"),
        state=alert.state,
        n_voices=len(ids),
        n_customers=len({f.customer_id for f in facts.values() if f.customer_id}),
        voice_ids=ids,
        typical_cases=list(view["typical_cases"]),
        first_seen=view["start"],
        last_seen=view["last_window"],
    )


def default_priority(source: ActionSource) -> str:
    """Return the priority an order from ``source`` starts with (editable by the person)."""
    if source.state in ("escalating", "regressed") or source.kind == "alert":
        return "high"
    return "normal"


def default_description(source: ActionSource, *, lang: str) -> str:
    """Return the pre-filled description: what, how many, since when, typical cases."""
    zh = lang == "zh-CN"
    head = (
        f"来源：{'问题' if source.kind == 'problem' else '告警'} {source.ref}；"
        f"{source.n_voices} 条声音，{source.n_customers} 位客户；"
        f"{(source.first_seen or '')[:10]} 至 {(source.last_seen or '')[:10]}。"
        if zh
        else f"From {source.kind} {source.ref}: {source.n_voices} voices, "
        f"{source.n_customers} customers, {(source.first_seen or '')[:10]} to "
        f"{(source.last_seen or '')[:10]}."
    )
    cases = [f"- {str(c.get('text') or '')[:200]}" for c in source.typical_cases[:3]]
    label = "典型案例：" if zh else "Typical cases:"
    return "\n".join([head, label, *cases]) if cases else head


# ---------------------------------------------------------------------------
# The filter bar on the problems page: dates, region, scenario (shared parameter names).


def _days_overlap(days: Sequence[str], start: date | None, end: date | None) -> bool:
    return any(
        (start is None or date.fromisoformat(d) >= start)
        and (end is None or date.fromisoformat(d) <= end)
        for d in days
    )


def _place_matches(place: str, province: str | None, city: str | None) -> bool:
    p, c = _place_region(place)
    return (province is None or p == province) and (city is None or c == city)


def filter_problems(
    problems: Sequence[Problem],
    *,
    start: date | None = None,
    end: date | None = None,
    province: str | None = None,
    city: str | None = None,
    scenario: str | None = None,
) -> list[Problem]:
    """Keep the problems with a voice on a local day in [start, end] and in the region.

    Problems mix channels and sentiments, so only dates, region and scenario filter them.
    """
    out = []
    for problem in problems:
        if scenario and problem.scenario != scenario:
            continue
        if (province or city) and not any(
            _place_matches(p, province, city) for p in json.loads(problem.regions_json or "{}")
        ):
            continue
        if (start or end) and not _days_overlap(
            list(json.loads(problem.daily_json or "{}")), start, end
        ):
            continue
        out.append(problem)
    return out


def filter_alerts(
    alerts: Sequence[Alert],
    *,
    start: date | None = None,
    end: date | None = None,
    values: Mapping[str, str | None] | None = None,
) -> list[Alert]:
    """Keep the alerts whose windows touch [start, end] and whose root cause fits ``values``.

    A root cause fits when it names no other value for a filtered dimension (a national
    alert fits a provincial filter: the province is part of it).
    """
    from voxloop.detect.notify import bucket_start

    wanted = {k: v for k, v in (values or {}).items() if v}
    out = []
    for alert in alerts:
        cause: dict[str, str] = json.loads(alert.values_json or "{}")
        if any(k in cause and cause[k] != v for k, v in wanted.items()):
            continue
        first = bucket_start(alert.first_bucket, alert.granularity).astimezone(SHANGHAI).date()
        last = bucket_start(alert.last_bucket, alert.granularity).astimezone(SHANGHAI).date()
        if (start and last < start) or (end and first > end):
            continue
        out.append(alert)
    return out
