"""Check surge detection and root cause against a generated operator's ground truth."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from voxloop.detect.alerts import SurgeAlert, scan_counts
from voxloop.detect.series import GRANULARITY_SECONDS, bucket_of, count_voices
from voxloop.detect.surge import SURGE_DETECTORS
from voxloop.errors import UnusableInputError
from voxloop.ingest.readers import read_text_table

TS = pa.timestamp("us", tz="UTC")


def _utc(path: Path, column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Parse ISO-8601 text as UTC timestamps; text without an offset is taken as UTC."""
    try:
        return pc.cast(column, TS)
    except pa.ArrowInvalid:
        try:
            return pc.cast(pc.cast(column, pa.timestamp("us")), TS)
        except pa.ArrowInvalid as exc:
            raise UnusableInputError(f"{path}: received_at: {exc}") from exc


def _scenario(attributes: pa.ChunkedArray) -> pa.Array:
    """Return ``attributes.scenario`` of each voice (the readers keep objects as JSON text)."""
    out: list[str | None] = []
    for text in attributes.to_pylist():
        value = json.loads(text) if text else None
        scenario = value.get("scenario") if isinstance(value, dict) else None
        out.append(None if scenario is None else str(scenario))
    return pa.array(out, pa.string())


def read_flat_voices(path: Path, *, text: bool = False) -> pa.Table:
    """Read a canonical ``voices.jsonl`` into the columns counting (and grouping) need.

    The file goes through the ingest reader (``voxloop.ingest.readers.read_text_table``),
    so a line it cannot parse stops the evaluation with its row number.  The scenario is
    the voice's ``attributes.scenario`` (the generator's label); ``text`` keeps the text.
    """
    if not path.is_file():
        raise UnusableInputError(f"{path}: no such voices file")
    table = read_text_table(path)
    for col in ("received_at", "attributes", *(("text",) if text else ())):
        if col not in table.column_names:
            raise UnusableInputError(f"{path}: column {col!r} missing")
    cols = {
        "received_at": _utc(path, table["received_at"]),
        "scenario": _scenario(table["attributes"]),
    }
    for c in ("province", "city", "district", "channel", "id", "customer_id"):
        cols[c] = table[c] if c in table.column_names else pa.nulls(table.num_rows, pa.string())
    if text:
        cols["text"] = table["text"]
    return pa.table(cols)


def _truth_matches(alert: SurgeAlert, inc: dict[str, Any]) -> tuple[bool, bool]:
    """Return (root cause consistent with the incident, root cause exactly the incident)."""
    v = alert.values
    place = ("scenario", "province", "city", "district")
    consistent = all(v.get(k) in (None, inc.get(k)) for k in place) and v.get("channel") in (
        None,
        inc.get("channel"),
    )
    exact = consistent and all(v.get(k) == inc.get(k) for k in place)
    return consistent, exact


def evaluate_incidents(
    *, data_dir: Path, granularity: str = "hour", detector: str = "seasonal_nb"
) -> dict[str, Any]:
    """Detect surges in a generated operator's voices and score them against ground truth."""
    truth_path = data_dir / "ground_truth.json"
    if not truth_path.is_file():
        raise UnusableInputError(f"{data_dir}: no ground_truth.json")
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    voices = read_flat_voices(data_dir / "voices.jsonl")
    counts = count_voices(voices, granularity=granularity)
    det = SURGE_DETECTORS[detector](granularity=granularity)
    alerts = scan_counts(counts, detector=det)
    width = GRANULARITY_SECONDS[granularity]
    incidents = []
    matched: set[int] = set()
    for inc in truth.get("incidents", []):
        start = bucket_of(int(datetime.fromisoformat(inc["start"]).timestamp()), granularity)
        end = bucket_of(int(datetime.fromisoformat(inc["end"]).timestamp()), granularity)
        hits = []
        for i, a in enumerate(alerts):
            consistent, exact = _truth_matches(a, inc)
            if consistent and start - 1 <= a.first_bucket <= end:
                hits.append((a.first_bucket, not exact, i, exact))
                matched.add(i)
        hits.sort()
        first = hits[0] if hits else None
        incidents.append(
            {
                "id": inc["id"],
                "alerted": first is not None,
                "delay_windows": None if first is None else first[0] - start,
                "delay_hours": None if first is None else (first[0] - start) * width / 3600,
                "within_one_window": first is not None and first[0] - start <= 1,
                "root_cause": None if first is None else alerts[first[2]].root_cause,
                "root_cause_exact": first is not None and first[3],
                "share_of_excess": None if first is None else round(alerts[first[2]].share, 3),
            }
        )
    n_series = len(det.series_)
    days = int(counts["bucket"].to_numpy().max()) - int(counts["bucket"].to_numpy().min()) + 1
    days_f = days * width / 86400
    false_alerts = [a for i, a in enumerate(alerts) if i not in matched]
    return {
        "granularity": granularity,
        "detector": detector,
        "voices": voices.num_rows,
        "series": n_series,
        "days": round(days_f, 2),
        "alerts": len(alerts),
        "incidents": incidents,
        "alerted_within_one_window": sum(i["within_one_window"] for i in incidents),
        "root_cause_exact_rate": (
            sum(i["root_cause_exact"] for i in incidents) / len(incidents) if incidents else None
        ),
        "false_alerts": len(false_alerts),
        "false_alerts_per_1000_series_days": 1000 * len(false_alerts) / (n_series * days_f),
        "false_alert_examples": [a.root_cause for a in false_alerts[:10]],
    }


def read_comcast(path: Path) -> pa.Table:
    """Read the Comcast complaints CSV as voices (state as province, channel as given)."""
    import pandas as pd

    frame = read_text_table(path).to_pandas()
    need = {"Date", "Time", "State", "City", "Received Via", "Customer Complaint"}
    missing = sorted(need - set(frame.columns))
    if missing:
        raise UnusableInputError(f"{path}: columns {missing} missing")
    stamp = pd.to_datetime(
        frame["Date"] + " " + frame["Time"], format="%d-%m-%y %I:%M:%S %p", errors="coerce"
    )
    bad = stamp.isna()
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0]) + 2
        raise UnusableInputError(f"{path}:{row}: unreadable Date/Time")
    # Local US times; buckets only need the calendar day, so keep the wall clock as is.
    utc = stamp.dt.tz_localize("UTC") - pd.Timedelta(hours=8)
    return pa.table(
        {
            "received_at": pa.array(utc, TS),
            "scenario": pa.nulls(len(frame), pa.string()),
            "province": frame["State"].astype(str),
            "city": frame["City"].astype(str),
            "district": pa.nulls(len(frame), pa.string()),
            "channel": frame["Received Via"].astype(str),
            "text": frame["Customer Complaint"].astype(str),
        }
    )


def evaluate_comcast(*, path: Path) -> dict[str, Any]:
    """Detect daily surges in the Comcast 2015 complaints; report days and root causes."""
    voices = read_comcast(path)
    counts = count_voices(voices, granularity="day")
    # Daily windows are coarse already: report every surging day with its own root cause.
    det = SURGE_DETECTORS["seasonal_nb"](granularity="day", cooldown=0)
    alerts = scan_counts(counts, detector=det, merge_gap=0)
    out: list[dict[str, Any]] = []
    for a in alerts:
        day = datetime.fromtimestamp(a.first_bucket * 86400, tz=UTC).date().isoformat()
        out.append(
            {
                "day": day,
                "root_cause": a.root_cause,
                "actual": a.actual,
                "expected": round(a.expected, 1),
                "candidates": [
                    {
                        "dimension": c.dimension,
                        "elements": c.elements,
                        "explanatory_power": round(c.explanatory_power, 3),
                        "complete": c.complete,
                    }
                    for c in a.breakdown
                ],
            }
        )
    june = [a for a in out if str(a["day"]).startswith("2015-06")]
    return {"alerts": out, "june_2015": june, "june_2015_alerted": bool(june)}


def evaluate_grouping_purity(
    *, path: Path, limit: int | None = None, threshold: float = 0.15
) -> dict[str, Any]:
    """Group CFPB narratives in one block; return purity and ARI against product labels."""
    from sklearn.metrics import adjusted_rand_score

    from voxloop.detect.problems import ProblemGrouper

    frame = read_text_table(path, columns=("narrative", "product"), limit=limit)
    texts = ["" if t is None else t for t in frame["narrative"].to_pylist()]
    labels = ["" if t is None else t for t in frame["product"].to_pylist()]
    grouper = ProblemGrouper(threshold=threshold)
    ids, _ = grouper.partial_fit_assign(
        texts, ["all"] * len(texts), [str(i) for i in range(len(texts))]
    )
    by: dict[str, Counter[str]] = {}
    for pid, lab in zip(ids, labels, strict=True):
        by.setdefault(pid, Counter())[lab] += 1
    majority = sum(c.most_common(1)[0][1] for c in by.values())
    multi = [c for c in by.values() if sum(c.values()) > 1]
    return {
        "narratives": len(texts),
        "problems": len(by),
        "purity": majority / len(texts),
        "purity_of_groups_with_2_or_more": (
            sum(c.most_common(1)[0][1] for c in multi) / sum(sum(c.values()) for c in multi)
            if multi
            else None
        ),
        "voices_in_groups_with_2_or_more": sum(sum(c.values()) for c in multi),
        "ari": adjusted_rand_score(labels, ids),
    }


def planted_pair_ari(
    *, planted: dict[str, str], voice_ids: list[str], problem_ids: list[str]
) -> float:
    """Return the adjusted Rand index over every pair of voices holding a planted voice.

    The ground truth knows which voices belong together (``planted``: voice id -> planted
    group) but says nothing about two unplanted voices, so those pairs are left out; every
    other pair counts: planted-planted pairs (splits and wrong merges) and planted-unplanted
    pairs (a routine voice grouped with an incident's voices is a false pair).  The index is
    computed from that pair confusion matrix with Hubert & Arabie's formula
    ``2 (ad - bc) / ((a + b)(b + d) + (a + c)(c + d))``; over planted voices alone it
    equals the usual ARI.

    References
    ----------
    Hubert & Arabie (1985), "Comparing partitions", Journal of Classification 2.
    """
    from math import comb

    n_all = len(voice_ids)
    in_truth = [v in planted for v in voice_ids]
    n_planted = sum(in_truth)
    size = Counter(problem_ids)
    planted_in = Counter(p for p, t in zip(problem_ids, in_truth, strict=True) if t)
    cell = Counter(
        (p, planted[v]) for v, p, t in zip(voice_ids, problem_ids, in_truth, strict=True) if t
    )
    group = Counter(planted[v] for v, t in zip(voice_ids, in_truth, strict=True) if t)
    total = comb(n_planted, 2) + n_planted * (n_all - n_planted)
    same_problem = sum(comb(size[p], 2) - comb(size[p] - k, 2) for p, k in planted_in.items())
    same_group = sum(comb(k, 2) for k in group.values())
    a = sum(comb(k, 2) for k in cell.values())
    b, c = same_group - a, same_problem - a
    d = total - a - b - c
    den = (a + b) * (b + d) + (a + c) * (c + d)
    return 1.0 if den == 0 else 2 * (a * d - b * c) / den


def evaluate_problems(*, data_dir: Path, batch: int | None = None) -> dict[str, Any]:
    """Group a generated operator's voices and compare with its planted problems (ARI).

    ``ari_planted`` is ``planted_pair_ari``: pairs of a planted voice with any voice,
    so grouping routine voices into an incident's problem is penalised.  An earlier
    version scored planted voices only (kept as ``ari_planted_only``), which a grouper
    merging whole scenarios into one problem would have passed with 1.0.  The scenario
    block is the generator's label (``attributes.scenario``), not a model's reading.
    """
    from sklearn.metrics import adjusted_rand_score

    from voxloop.detect.problems import ProblemGrouper, block_keys, context_tokens
    from voxloop.ingest.pii import mask_array

    truth = json.loads((data_dir / "ground_truth.json").read_text(encoding="utf-8"))
    table = read_flat_voices(data_dir / "voices.jsonl", text=True)
    table = table.sort_by([("received_at", "ascending"), ("id", "ascending")])
    masked, _ = mask_array(table["text"].combine_chunks())
    texts = masked.to_pylist()
    vid = table["id"].to_pylist()
    ctx = context_tokens(table)
    grouper = ProblemGrouper()
    size = batch or len(texts)
    ids: list[str] = []
    t0 = time.perf_counter()
    for start in range(0, len(texts), size):
        part = table.slice(start, size)
        got, _ = grouper.partial_fit_assign(
            texts[start : start + size],
            block_keys(part, grouper.block_by),
            vid[start : start + size],
            ctx[start : start + size],
        )
        ids.extend(got)
    seconds = time.perf_counter() - t0
    label = {v: p["id"] for p in truth.get("problems", []) for v in p["voice_ids"]}
    pairs = [(label[v], c) for v, c in zip(vid, ids, strict=True) if v in label]
    contaminated = planted_pair_ari(planted=label, voice_ids=vid, problem_ids=ids)
    sizes = Counter(ids)
    precision = {}
    for p in truth.get("problems", []):
        members = set(p["voice_ids"])
        top, n = Counter(c for v, c in zip(vid, ids, strict=True) if v in members).most_common(1)[0]
        precision[p["id"]] = round(n / sizes[top], 3)
    return {
        "voices": len(texts),
        "problems": len(sizes),
        "batch": size,
        "grouping_seconds": seconds,
        "ari_planted": contaminated,
        "ari_planted_only": adjusted_rand_score([a for a, _ in pairs], [b for _, b in pairs]),
        "main_group_precision": precision,
    }
