"""Demo-operator generator: determinism, canonical format, realism and planted ground truth."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from voxloop.cli.generate import register
from voxloop.config import Settings
from voxloop.demo.generator import (
    FACTORS,
    HOLIDAY_FACTOR,
    LARGE_DATA_PLANS,
    SCENARIO_MIX,
    day_factors,
    generate_operator,
    resident_id,
)
from voxloop.ingest.schemas import (
    LAKE_TABLES,
    LINEAGE_FIELDS,
    RECORD_MODELS,
    RecordKind,
)

FILES = ("customers.csv", "voices.jsonl", "surveys.jsonl", "events.jsonl", "ground_truth.json")
CUSTOMERS, DAYS, SEED = 2000, 20, 11


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Generate one small operator shared by the tests of this module."""
    out = tmp_path_factory.mktemp("operator")
    summary = generate_operator(customers=CUSTOMERS, days=DAYS, seed=SEED, out_dir=out)
    return out, summary


def _jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def _customers(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _truth(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "ground_truth.json").read_text(encoding="utf-8"))
    return data


def _planted_voice_ids(truth: dict[str, Any]) -> set[str]:
    return {v for p in truth["problems"] for v in p["voice_ids"]}


def test_same_seed_gives_identical_files_and_other_seed_differs(
    small: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, _ = small
    again = generate_operator(customers=CUSTOMERS, days=DAYS, seed=SEED, out_dir=tmp_path / "a")
    for name in FILES:
        assert (out / name).read_bytes() == (tmp_path / "a" / name).read_bytes(), name
    assert again["voices"] > 0
    generate_operator(customers=CUSTOMERS, days=DAYS, seed=SEED + 1, out_dir=tmp_path / "b")
    assert (out / "voices.jsonl").read_bytes() != (tmp_path / "b" / "voices.jsonl").read_bytes()


def _canonical_columns(kind: RecordKind) -> set[str]:
    lineage = {f.name for f in LINEAGE_FIELDS}
    schema = LAKE_TABLES[kind][1]
    return {name for name in schema.names if name not in lineage and name != "pii_counts"}


def _nest(row: dict[str, Any], kind: RecordKind) -> dict[str, Any]:
    """Turn a flat canonical row into the pydantic record shape."""
    out = dict(row)
    out["region"] = {k: out.pop(k) for k in ("province", "city", "district")}
    if kind is RecordKind.customer:
        out["plan"] = {
            "name": out.pop("plan_name"),
            "monthly_fee": float(out.pop("plan_monthly_fee")),
            "data_gb": float(out.pop("plan_data_gb")),
            "voice_minutes": float(out.pop("plan_voice_minutes")),
            "is_5g": out.pop("plan_is_5g") == "true",
        }
        out["churned_at"] = out["churned_at"] or None
        out["attributes"] = json.loads(out["attributes"])
    return out


def test_files_use_canonical_columns_and_validate(small: tuple[Path, dict[str, Any]]) -> None:
    out, summary = small
    start = datetime.fromisoformat("2026-09-01T00:00:00+08:00")
    end = start + timedelta(days=DAYS)
    customers = _customers(out / "customers.csv")
    assert len(customers) == CUSTOMERS == summary["customers"]
    tables = {
        RecordKind.customer: customers,
        RecordKind.voice: _jsonl(out / "voices.jsonl"),
        RecordKind.survey: _jsonl(out / "surveys.jsonl"),
        RecordKind.event: _jsonl(out / "events.jsonl"),
    }
    for kind, rows in tables.items():
        expected = _canonical_columns(kind)
        model = RECORD_MODELS[kind]
        for i, row in enumerate(rows):
            assert set(row) == expected, (kind, i, set(row) ^ expected)
            model.model_validate(_nest(row, kind))
    ids = [c["id"] for c in customers]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"1[3-9]\d{9}", i) for i in ids)
    for kind, field in ((RecordKind.voice, "received_at"), (RecordKind.event, "occurred_at")):
        stamps = [_ts(r[field]) for r in tables[kind]]
        assert min(stamps) >= start and max(stamps) < end, kind
    known = set(ids)
    for kind in (RecordKind.voice, RecordKind.survey, RecordKind.event):
        assert {r["customer_id"] for r in tables[kind]} - {None} <= known, kind
    assert len(tables[RecordKind.voice]) == summary["voices"]
    assert len(tables[RecordKind.event]) == summary["events"]


def test_resident_ids_have_valid_check_digits() -> None:
    import random

    from voxloop.ingest.pii import id_checksum_ok

    rnd = random.Random(3)
    assert all(id_checksum_ok(resident_id(rnd, "江苏")) for _ in range(50))


def test_texts_are_diverse_with_a_realistic_length_spread(
    small: tuple[Path, dict[str, Any]],
) -> None:
    out, _ = small
    voices = _jsonl(out / "voices.jsonl")
    texts = [v["text"] for v in voices]
    assert len(set(texts)) / len(texts) > 0.95
    lengths = np.array([len(t) for t in texts])
    p10, p50, p90 = np.percentile(lengths, [10, 50, 90])
    assert p10 < 30 and p90 > 100 and p90 > 3 * p10, (p10, p50, p90)
    english = sum(v["language"] == "en" for v in voices) / len(voices)
    assert 0.05 < english < 0.16
    transcripts = [v["text"] for v in voices if v["kind"] == "call_transcript"]
    assert transcripts and all(
        ("客户：" in t and "坐席：" in t) or "Customer:" in t for t in transcripts
    )
    pii = re.compile(r"1[3-9]\d{9}|\d{17}[\dX]|\d+栋")
    share = sum(bool(pii.search(t)) for t in texts) / len(texts)
    assert 0.03 < share < 0.15, share
    assert any(p in t for t in texts for p in ("伐", "嘛", "咋", "啥", "咩"))


def test_scenario_mix_channels_and_daily_seasonality(small: tuple[Path, dict[str, Any]]) -> None:
    out, _ = small
    truth = _truth(out)
    planted = _planted_voice_ids(truth)
    churners = set(truth["churn_customers"]) | set(truth["background_churn_customers"])
    voices = [
        v
        for v in _jsonl(out / "voices.jsonl")
        if v["id"] not in planted and v["customer_id"] not in churners
    ]
    counts = Counter(v["attributes"]["scenario"] for v in voices)
    assert set(counts) == set(SCENARIO_MIX)
    for code, share in SCENARIO_MIX.items():
        assert abs(counts[code] / len(voices) - share) < 0.05, code
    assert counts.most_common(1)[0][0] == "BILL"
    channels = Counter(v["channel"] for v in voices)
    assert channels.most_common(1)[0][0] == "hotline_10086"
    escalated = [v for v in voices if v["channel"] in ("supervision_10080", "regulator_12300")]
    assert escalated and all(v["attributes"]["scenario"] in ("SUPV", "CMPL") for v in escalated)
    hours = Counter(_ts(v["received_at"]).hour for v in voices)
    night = sum(hours[h] for h in range(0, 6))
    morning = sum(hours[h] for h in range(9, 12))
    assert morning > 5 * night


def test_background_voices_create_no_surge(small: tuple[Path, dict[str, Any]]) -> None:
    out, _ = small
    truth = _truth(out)
    planted = _planted_voice_ids(truth)
    daily: Counter[tuple[str, str, str]] = Counter()
    for v in _jsonl(out / "voices.jsonl"):
        if v["id"] not in planted:
            daily[(v["city"], v["attributes"]["scenario"], v["received_at"][:10])] += 1
    surge = truth["incidents"][0]
    surge_days: Counter[str] = Counter()
    voices = {v["id"]: v for v in _jsonl(out / "voices.jsonl")}
    for vid in truth["problems"][0]["voice_ids"]:
        surge_days[voices[vid]["received_at"][:10]] += 1
    assert surge["n_voices"] == sum(surge_days.values())
    assert max(daily.values()) * 2 < min(surge_days.values())


def test_billing_surge_is_in_the_declared_city_and_window(
    small: tuple[Path, dict[str, Any]],
) -> None:
    out, _ = small
    truth = _truth(out)
    surge = next(i for i in truth["incidents"] if i["kind"] == "surge")
    start, end = _ts(surge["start"]), _ts(surge["end"])
    assert end - start == timedelta(days=2)
    voices = [v for v in _jsonl(out / "voices.jsonl") if v["attributes"].get("incident")]
    mine = [v for v in voices if v["attributes"]["incident"] == surge["id"]]
    assert len(mine) == surge["n_voices"] >= 40
    assert all(v["city"] == surge["city"] and v["province"] == surge["province"] for v in mine)
    assert all(start <= _ts(v["received_at"]) < end for v in mine)
    assert all(v["attributes"]["scenario"] == "BILL" for v in mine)
    assert all("19.9" in v["text"] for v in mine)
    channels = Counter(v["channel"] for v in mine)
    assert channels.most_common(1)[0][0] == "hotline_10086"
    assert channels["hotline_10086"] / len(mine) > 0.5


def test_broadband_outage_events_and_voices_agree(small: tuple[Path, dict[str, Any]]) -> None:
    out, _ = small
    truth = _truth(out)
    outage = next(i for i in truth["incidents"] if i["kind"] == "outage")
    events = [
        e for e in _jsonl(out / "events.jsonl") if e["attributes"].get("outage_id") == "out-major"
    ]
    by_type = {e["type"]: e for e in events}
    assert set(by_type) == {"outage_started", "outage_ended"}
    for e in events:
        assert (e["province"], e["city"], e["district"]) == (
            outage["province"],
            outage["city"],
            outage["district"],
        )
        assert e["customer_id"] is None
    assert by_type["outage_started"]["occurred_at"] == outage["start"]
    assert by_type["outage_ended"]["occurred_at"] == outage["end"]
    start, end = _ts(outage["start"]), _ts(outage["end"])
    mine = [
        v for v in _jsonl(out / "voices.jsonl") if v["attributes"].get("incident") == outage["id"]
    ]
    assert len(mine) == outage["n_voices"] >= 10
    assert all(v["district"] == outage["district"] for v in mine)
    assert all(start <= _ts(v["received_at"]) <= end for v in mine)
    assert all(v["attributes"]["scenario"] == "HBB" for v in mine)


def test_problems_reference_existing_voices_with_a_shared_theme(
    small: tuple[Path, dict[str, Any]],
) -> None:
    out, _ = small
    truth = _truth(out)
    voices = {v["id"]: v for v in _jsonl(out / "voices.jsonl")}
    seen: set[str] = set()
    for problem in truth["problems"]:
        ids = problem["voice_ids"]
        assert len(ids) >= 10 and not seen & set(ids), problem["id"]
        seen |= set(ids)
        assert all(voices[i]["attributes"]["scenario"] == problem["scenario"] for i in ids)
    harassment = next(p for p in truth["problems"] if p["id"] == "prob-mkt-harassment")
    numbers = Counter(
        m
        for i in harassment["voice_ids"]
        for m in re.findall(r"(?<!\d)95\d{6}(?!\d)", voices[i]["text"])
    )
    assert len(numbers) == 1
    number = next(iter(numbers))
    assert all(number in voices[i]["text"] for i in harassment["voice_ids"])


def _local_date(ts: str) -> str:
    return _ts(ts).astimezone(_ts("2026-09-01T00:00:00+08:00").tzinfo).date().isoformat()


def _check_commitments(events: list[dict[str, Any]], window_end: datetime) -> set[tuple[str, str]]:
    """Independent rule checker: return (rule, first event id) of every violation."""
    by_req: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for e in events:
        rid = e["attributes"].get("request_id")
        if rid:
            by_req[rid][e["type"]].append(e)
    found: set[tuple[str, str]] = set()
    for group in by_req.values():
        if "usage_over_plan" in group and "overage_reminder_sent" not in group:
            found.add(("R4", group["usage_over_plan"][0]["id"]))
        for req in group.get("plan_change_requested", []):
            start = _ts(req["occurred_at"])
            if "contract_end" in req["attributes"]:
                end_day = datetime.fromisoformat(req["attributes"]["contract_end"])
                start = max(start, end_day.replace(tzinfo=start.tzinfo))
            done = group.get("plan_change_done", [])
            deadline = start + timedelta(hours=48)
            if (not done and window_end > deadline) or (
                done and _ts(done[0]["occurred_at"]) > deadline
            ):
                found.add(("R6", req["id"]))
        for req in group.get("unsubscribe_requested", []):
            a = req["attributes"]
            if a["eligible"] != "true" or req["channel"] not in ("hotline_10086", "store"):
                continue
            done = group.get("unsubscribe_done", [])
            if not any(d["attributes"].get("interaction_id") == a["interaction_id"] for d in done):
                found.add(("R7", req["id"]))
        for req in group.get("broadband_cancel_requested", []):
            done = group.get("broadband_cancel_done", [])
            day = _local_date(req["occurred_at"])
            if not any(_local_date(d["occurred_at"]) == day for d in done):
                found.add(("R8", req["id"]))
        for req in group.get("complaint_opened", []):
            opened = _ts(req["occurred_at"])
            replies = group.get("complaint_replied", [])
            first = group.get("complaint_first_response", [])
            late_reply = (not replies and window_end - opened > timedelta(days=15)) or any(
                _ts(r["occurred_at"]) - opened > timedelta(days=15) for r in replies
            )
            late_first = not first or _ts(first[0]["occurred_at"]) - opened > timedelta(hours=48)
            if late_reply or late_first:
                found.add(("R13", req["id"]))
    return found


JOURNEY_EVENT_TYPES = {
    "plan_change_requested", "plan_change_done", "unsubscribe_requested", "unsubscribe_done",
    "broadband_cancel_requested", "broadband_cancel_done", "usage_over_plan",
    "overage_reminder_sent", "bill_issued", "complaint_opened", "complaint_first_response",
    "complaint_replied", "outage_started", "outage_ended", "order_activated",
    "consent_recorded", "success_sms_sent", "port_out_requested", "account_closed",
}  # fmt: skip


def test_events_cover_every_journey_event_type(small: tuple[Path, dict[str, Any]]) -> None:
    out, _ = small
    events = _jsonl(out / "events.jsonl")
    assert {e["type"] for e in events} == JOURNEY_EVENT_TYPES
    stamps = [e["occurred_at"] for e in events]
    assert stamps == sorted(stamps)
    bills = Counter(e["type"] for e in events)["bill_issued"]
    assert bills == CUSTOMERS  # one bill on 1 September for every open account


def test_rule_checker_finds_exactly_the_planted_violations(
    small: tuple[Path, dict[str, Any]],
) -> None:
    out, _ = small
    truth = _truth(out)
    events = _jsonl(out / "events.jsonl")
    window_end = _ts(truth["start"]) + timedelta(days=DAYS)
    planted = {(v["rule"], v["event_ids"][0]) for v in truth["commitment_violations"]}
    assert {rule for rule, _ in planted} == {"R4", "R6", "R7", "R8", "R13"}
    assert _check_commitments(events, window_end) == planted
    by_id = {e["id"]: e for e in events}
    for v in truth["commitment_violations"]:
        assert all(by_id[e]["customer_id"] == v["customer_id"] for e in v["event_ids"])
    checked = Counter(
        e["type"]
        for e in events
        if e["type"] in ("plan_change_requested", "unsubscribe_requested", "complaint_opened")
    )
    assert min(checked.values()) > 3 * len(planted) / 5


def test_churn_customers_have_churn_journeys(small: tuple[Path, dict[str, Any]]) -> None:
    out, _ = small
    truth = _truth(out)
    customers = {c["id"]: c for c in _customers(out / "customers.csv")}
    events = _jsonl(out / "events.jsonl")
    by_customer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["customer_id"]:
            by_customer[e["customer_id"]].append(e)
    last_voice: dict[str, datetime] = {}
    for v in _jsonl(out / "voices.jsonl"):
        if v["customer_id"]:
            t = _ts(v["received_at"])
            last_voice[v["customer_id"]] = max(t, last_voice.get(v["customer_id"], t))
    churned = {cid for cid, c in customers.items() if c["status"] == "churned"}
    assert set(truth["churn_customers"]) | set(truth["background_churn_customers"]) == churned
    for cid in churned:
        closed_at = _ts(customers[cid]["churned_at"])
        journey = by_customer[cid]
        closes = [e for e in journey if e["type"] == "account_closed"]
        assert len(closes) == 1 and _ts(closes[0]["occurred_at"]) == closed_at
        assert all(_ts(e["occurred_at"]) <= closed_at for e in journey)
        assert cid not in last_voice or last_voice[cid] < closed_at
    for cid in truth["churn_customers"]:
        types = [e["type"] for e in sorted(by_customer[cid], key=lambda e: e["occurred_at"])]
        assert types[-1] == "account_closed" and "port_out_requested" in types, cid
        assert types.count("complaint_opened") >= 2, cid
        replies = [e for e in by_customer[cid] if e["type"] == "complaint_replied"]
        assert all(r["attributes"]["resolved"] == "false" for r in replies)
    outages = {e["attributes"]["outage_id"]: e for e in events if e["type"] == "outage_started"}
    assert {o["id"] for o in truth["outages"]} == set(outages)
    exposed = 0
    for cid in truth["churn_customers"]:
        row = customers[cid]
        first = min(
            _ts(e["occurred_at"]) for e in by_customer[cid] if e["type"] == "complaint_opened"
        )
        exposed += any(
            o["district"] == row["district"] and o["city"] == row["city"] and _ts(o["end"]) < first
            for o in truth["outages"]
        )
    assert exposed >= len(truth["churn_customers"]) // 4
    background = len(truth["background_churn_customers"]) / CUSTOMERS
    assert 0.002 < background < 0.05
    complaints = Counter(e["customer_id"] for e in events if e["type"] == "complaint_opened")
    planted_mean = np.mean([complaints[c] for c in truth["churn_customers"]])
    others_mean = np.mean([complaints[c] for c in customers if c not in churned])
    assert planted_mean > 5 * others_mean


def test_tariff_is_the_top_short_board_of_the_dissatisfied_segment(
    small: tuple[Path, dict[str, Any]],
) -> None:
    out, _ = small
    truth = _truth(out)
    segment = truth["dissatisfied_segment"]
    assert segment["short_board"] == "tariff"
    assert set(segment["conditions"]["plan_name"]) == set(LARGE_DATA_PLANS)
    customers = {c["id"]: c for c in _customers(out / "customers.csv")}
    members = {c for c, row in customers.items() if row["plan_name"] in LARGE_DATA_PLANS}
    assert set(segment["customer_ids"]) == members
    surveys = _jsonl(out / "surveys.jsonl")
    assert all("tariff" in s["factors"] for s in surveys)
    x = np.array([[s["factors"].get(f, np.nan) for f in FACTORS] for s in surveys])
    # Factors asked in few responses get noisy coefficients from a few hundred surveys.
    common = np.flatnonzero((~np.isnan(x)).mean(axis=0) >= 0.25)
    x = np.where(np.isnan(x), np.nanmean(x, axis=0), x)
    y = np.array([s["overall"] for s in surveys])
    design = np.column_stack([np.ones(len(y)), x])
    coef = np.linalg.lstsq(design, y, rcond=None)[0][1:]
    tariff = FACTORS.index("tariff")
    assert int(common[np.argmax(coef[common])]) == tariff, dict(
        zip(FACTORS, coef.round(2), strict=True)
    )
    means = np.nanmean(
        np.array([[s["factors"].get(f, np.nan) for f in FACTORS] for s in surveys]), axis=0
    )
    assert tariff in np.argsort(means)[:2]
    inside = [s for s in surveys if s["customer_id"] in members]
    outside = [s for s in surveys if s["customer_id"] not in members]
    assert np.mean([s["factors"]["tariff"] for s in inside]) + 2 < np.mean(
        [s["factors"]["tariff"] for s in outside]
    )
    assert np.mean([s["overall"] for s in inside]) < np.mean([s["overall"] for s in outside])


def test_cli_generate_writes_the_files(tmp_path: Path) -> None:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """Mimic the real CLI, where generate is one subcommand among many."""

    register(app=app, evaluate=typer.Typer(), analyze=typer.Typer())
    args = [
        "generate",
        "--customers",
        "300",
        "--days",
        "14",
        "--seed",
        "3",
        "--json",
        str(tmp_path / "o"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["customers"] == 300
    for name in FILES:
        assert (tmp_path / "o" / name).stat().st_size > 0, name
    bad = CliRunner().invoke(app, ["generate", "--start", "not-a-date", str(tmp_path / "p")])
    assert bad.exit_code != 0


def test_too_small_an_operator_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="customers=10"):
        generate_operator(customers=10, days=30, seed=1, out_dir=tmp_path)
    with pytest.raises(ValueError, match="days=3"):
        generate_operator(customers=500, days=3, seed=1, out_dir=tmp_path)


def test_national_day_and_weekends_lower_the_baseline() -> None:
    factors = day_factors(date(2026, 9, 28), 14)
    golden_week = factors[3:10]  # 1-7 October 2026
    assert all(f <= max(HOLIDAY_FACTOR, 0.8) for f in golden_week)
    working_days = [f for f, d in zip(factors, range(14), strict=True) if d in (0, 1, 2)]
    assert min(working_days) > max(golden_week)


def test_ingest_loads_the_output_with_no_mapping(settings: Settings, tmp_path: Path) -> None:
    from voxloop.ingest.service import ingest_path
    from voxloop.store.service import lake_connection, migrate

    out = tmp_path / "operator"
    summary = generate_operator(customers=300, days=14, seed=5, out_dir=out)
    migrate(settings)
    result = ingest_path(settings=settings, path=out)
    expected = summary["customers"] + summary["voices"] + summary["surveys"] + summary["events"]
    assert result.read == result.stored == expected
    assert result.quarantined == 0
    con = lake_connection(settings)
    masked = con.execute(
        "select count(*) from voices where cardinality(pii_counts) > 0 and text like '%<%>%'"
    ).fetchone()[0]
    assert masked > 0
