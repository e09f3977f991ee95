"""Count series, seasonal surge detectors (shared check suite) and Adtributor root cause."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from voxloop.detect.alerts import scan_counts
from voxloop.detect.rootcause import adtributor, explain
from voxloop.detect.series import (
    bucket_of,
    count_voices,
    cuboids,
    dense_counts,
    merge_counts,
    parse_key,
    series_key,
)
from voxloop.detect.surge import SURGE_DETECTORS, is_offday

T0 = datetime(2026, 9, 1, tzinfo=UTC)


def _voices(rows: list[tuple[float, str, str, str, str, str]]) -> pa.Table:
    hours, scen, prov, city, dist, chan = zip(*rows, strict=True)
    return pa.table(
        {
            "received_at": pa.array(
                [T0 + timedelta(hours=h) for h in hours], pa.timestamp("us", tz="UTC")
            ),
            "scenario": list(scen),
            "province": list(prov),
            "city": list(city),
            "district": list(dist),
            "channel": list(chan),
        }
    )


def _synthetic(seed: int, days: int = 21, surge_day: int = 15) -> pa.Table:
    """Background voices over many places, plus one BILL surge in one city by hotline."""
    rng = np.random.default_rng(seed)
    places = [("江苏", "南京", "玄武区"), ("江苏", "苏州", "姑苏区"), ("广东", "深圳", "宝安区")]
    scen = ["BILL", "HBB", "MNET", "PLAN"]
    chans = ["hotline_10086", "app", "store"]
    rows = []
    n = days * 24 * 6
    hours = rng.random(n) * days * 24
    for h in hours:
        p = places[rng.integers(0, 3)]
        rows.append((float(h), scen[rng.integers(0, 4)], *p, chans[rng.integers(0, 3)]))
    for h in surge_day * 24 + 9 + rng.random(60) * 6:
        rows.append((float(h), "BILL", "江苏", "南京", "玄武区", "hotline_10086"))
    return _voices(rows)


def test_counts_cover_every_cuboid_and_add_up() -> None:
    table = _synthetic(1, days=3, surge_day=1)
    counts = count_voices(table, granularity="day")
    total = sum(counts["count"].to_pylist())
    assert total == table.num_rows * len(cuboids())
    half = table.num_rows // 2
    merged = merge_counts(
        count_voices(table.slice(0, half), granularity="day"),
        count_voices(table.slice(half), granularity="day"),
    )
    assert sorted(merged.to_pylist(), key=str) == sorted(counts.to_pylist(), key=str)
    keys = set(counts["series"].to_pylist())
    assert "*" in keys
    assert "scenario=BILL|province=江苏|city=南京|channel=hotline_10086" in keys
    # Regions are hierarchical: no city series without its province.
    assert not any(k.startswith("city=") or ("|city=" in k and "province=" not in k) for k in keys)


def test_count_buckets_follow_local_days_and_bad_input_is_named() -> None:
    # 2026-09-01 17:00 UTC is 2026-09-02 01:00 in Shanghai: the second local day.
    table = _voices([(17.0, "BILL", "江苏", "南京", "玄武区", "app")])
    counts = count_voices(table, granularity="day")
    day = bucket_of(int(T0.timestamp()) + 17 * 3600, "day")
    assert set(counts["bucket"].to_pylist()) == {day}
    assert day == bucket_of(int(datetime(2026, 9, 2, tzinfo=UTC).timestamp()), "day")
    with pytest.raises(ValueError, match="granularity"):
        count_voices(table, granularity="week")
    with pytest.raises(ValueError, match="channel"):
        count_voices(table.drop(["channel"]), granularity="day")
    dense = dense_counts(counts, series=["*", "nope"], first=day - 1, last=day)
    assert dense.tolist() == [[0, 0], [1, 0]]


def test_series_keys_round_trip() -> None:
    key = series_key({"scenario": "BILL", "province": "江苏", "channel": None})
    assert key == "scenario=BILL|province=江苏|channel=?"
    assert parse_key(key) == {"scenario": "BILL", "province": "江苏", "channel": "?"}
    assert parse_key("*") == {}


def test_chinese_calendar_offdays() -> None:
    assert is_offday(date(2026, 10, 1))  # National Day
    assert not is_offday(date(2026, 9, 30))
    assert is_offday(date(2026, 9, 5))  # a Saturday


@pytest.mark.parametrize("name", sorted(SURGE_DETECTORS))
def test_surge_detector_contract(name: str, tmp_path: Path) -> None:
    """Shared check suite: params stored as given, update returns self, save/load exact."""
    cls = SURGE_DETECTORS[name]
    det = cls(granularity="hour", warmup_days=1.0, cooldown=3)
    assert det.get_params()["cooldown"] == 3
    assert not any(k.endswith("_") for k in vars(det))
    idx = det.add_series(["a", "b", "c"])
    assert idx.tolist() == [0, 1, 2]
    rng = np.random.default_rng(0)
    start = bucket_of(int(T0.timestamp()), "hour")
    for b in range(start, start + 60):
        assert det.update(rng.poisson([2.0, 0.2, 5.0]), bucket=b) is det
    path = tmp_path / "det.npz"
    det.save(path)
    clone = cls.load(path)
    x = np.array([2.0, 9.0, 30.0])
    det.update(x, bucket=start + 60)
    clone.update(x, bucket=start + 60)
    assert np.allclose(det.pvalue_, clone.pvalue_) and (det.alerts_ == clone.alerts_).all()
    assert det.alerts_[2] and not det.alerts_[0]
    with pytest.raises(ValueError, match="not after"):
        det.update(x, bucket=start)
    with pytest.raises(ValueError, match="series"):
        det.update(np.zeros(2), bucket=start + 61)


def test_detection_pass_over_100k_series_is_vectorised() -> None:
    det = SURGE_DETECTORS["seasonal_nb"](granularity="hour", warmup_days=0.0)
    det.add_series([f"s{i}" for i in range(100_000)])
    rng = np.random.default_rng(1)
    start = bucket_of(int(T0.timestamp()), "hour")
    for b in range(start, start + 3):
        det.update(rng.poisson(1.0, 100_000), bucket=b)
    assert det.pvalue_.shape == (100_000,)


def test_adtributor_finds_the_succinct_explanation() -> None:
    breakdown = {
        "city": {"南京": (150.0, 50.0), "苏州": (52.0, 50.0), "无锡": (49.0, 50.0)},
        "channel": {"app": (90.0, 75.0), "hotline": (161.0, 75.0)},
    }
    cands = adtributor(breakdown)
    assert cands[0].dimension == "city" and cands[0].elements == ["南京"]
    assert cands[0].explanatory_power == pytest.approx(100 / 101)


def test_explain_descends_to_the_conjunction() -> None:
    observed = {
        "*": (300.0, 100.0),
        "scenario=BILL": (230.0, 30.0),
        "scenario=HBB": (70.0, 70.0),
        "province=江苏": (250.0, 50.0),
        "province=广东": (50.0, 50.0),
        "scenario=BILL|province=江苏": (215.0, 15.0),
        "scenario=BILL|province=广东": (15.0, 15.0),
        "scenario=HBB|province=江苏": (35.0, 35.0),
        "scenario=HBB|province=广东": (35.0, 35.0),
        "scenario=BILL|province=江苏|city=南京": (208.0, 8.0),
        "scenario=BILL|province=江苏|city=苏州": (7.0, 7.0),
    }
    cause = explain("*", observed)
    assert cause.key == "scenario=BILL|province=江苏|city=南京"
    assert cause.share == pytest.approx(1.0)
    with pytest.raises(KeyError):
        explain("scenario=TERM", observed)


def test_scan_finds_planted_surge_with_root_cause_and_no_false_alert() -> None:
    table = _synthetic(2)
    counts = count_voices(table, granularity="hour")
    det = SURGE_DETECTORS["seasonal_nb"](granularity="hour")
    alerts = scan_counts(counts, detector=det)
    assert len(alerts) == 1, [a.root_cause for a in alerts]
    alert = alerts[0]
    # Each synthetic city has one district: naming it would add nothing, so the
    # conjunction stops at the city.
    assert alert.values == {
        "scenario": "BILL",
        "province": "江苏",
        "city": "南京",
        "channel": "hotline_10086",
    }
    surge_start = bucket_of(int((T0 + timedelta(days=15, hours=9)).timestamp()), "hour")
    assert surge_start <= alert.first_bucket <= surge_start + 1
    assert alert.excess > 20
