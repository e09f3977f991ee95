"""Check surge detection and root cause against a generated operator's ground truth."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from voxloop.detect.alerts import SurgeAlert, scan_counts
from voxloop.detect.series import GRANULARITY_SECONDS, bucket_of, count_voices
from voxloop.detect.surge import SURGE_DETECTORS
from voxloop.errors import UnusableInputError

TS = pa.timestamp("us", tz="UTC")


def read_flat_voices(path: Path) -> pa.Table:
    """Read a canonical ``voices.jsonl`` into the columns counting needs.

    The scenario is the voice's ``attributes.scenario`` (the generator's label).
    """
    if not path.is_file():
        raise UnusableInputError(f"{path}: no such voices file")
    table = pj.read_json(path)
    for col in ("received_at", "attributes"):
        if col not in table.column_names:
            raise UnusableInputError(f"{path}: column {col!r} missing")
    attrs = table["attributes"]
    scenario = (
        pc.struct_field(attrs, "scenario")
        if pa.types.is_struct(attrs.type)
        else pa.nulls(table.num_rows, pa.string())
    )
    received = table["received_at"]
    if received.type.tz is None:
        # pyarrow converts ISO offsets to UTC but leaves the type naive.
        received = received.cast(pa.timestamp(received.type.unit, tz="UTC"))
    cols = {"received_at": received.cast(TS), "scenario": scenario}
    for c in ("province", "city", "district", "channel", "id", "customer_id"):
        cols[c] = table[c] if c in table.column_names else pa.nulls(table.num_rows, pa.string())
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
