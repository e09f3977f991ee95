"""Plan recommendation: catalogue, cheapest covering plan, 5G rule, generated ground truth."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from voxloop.assist.plans import (
    PLANS_FILE,
    customer_profile,
    load_catalogue,
    parse_catalogue,
    recommend_plan,
)
from voxloop.config import Settings
from voxloop.demo.generator import PLANS
from voxloop.errors import UnusableInputError


def profile(plan: str, data: str | None, voice: str | None, **extra: Any) -> dict[str, Any]:
    """A lake profile row on the packaged catalogue's plan called ``plan``."""
    spec = next(p for p in PLANS if p.name == plan)
    attributes = {k: v for k, v in (("data_used_gb", data), ("voice_used_min", voice)) if v}
    attributes.update(extra.pop("attributes", {}))
    return {
        "id": "c-test",
        "plan_name": spec.name,
        "plan_monthly_fee": spec.monthly_fee,
        "plan_data_gb": spec.data_gb,
        "plan_voice_minutes": spec.voice_minutes,
        "plan_is_5g": spec.is_5g,
        "segment": extra.pop("segment", "mass_market"),
        "attributes": attributes,
        **extra,
    }


def test_packaged_catalogue_is_the_demo_operators() -> None:
    catalogue = parse_catalogue(PLANS_FILE)
    assert catalogue.headroom == 0.2
    shipped = [
        (p.name, p.monthly_fee, p.data_gb, p.voice_minutes, p.is_5g) for p in catalogue.plans
    ]
    assert shipped == [(p.name, p.monthly_fee, p.data_gb, p.voice_minutes, p.is_5g) for p in PLANS]
    segments = {p.name: p.segments for p in catalogue.plans}
    assert segments == {p.name: ([] if p.segment == "mass_market" else [p.segment]) for p in PLANS}


def test_recommendation_is_the_cheapest_eligible_covering_plan() -> None:
    catalogue = parse_catalogue(PLANS_FILE)
    factor = 1 + catalogue.headroom
    for current, data, voice in itertools.product(
        ("5G畅享套餐 199元", "4G飞享套餐 58元", "4G飞享套餐 18元"),
        (0.5, 4.0, 9.0, 24.0, 90.0, 400.0),
        (20, 90, 280, 1400),
    ):
        row = profile(current, str(data), str(voice))
        rec = recommend_plan(catalogue=catalogue, customer=row)
        five_g = row["plan_is_5g"]
        eligible = [
            p
            for p in catalogue.plans
            if not p.segments and (p.is_5g or not five_g)
            if p.data_gb >= data * factor and p.voice_minutes >= voice * factor
        ]
        where = f"{current} {data} GB {voice} min: {rec.status}"
        if not eligible:
            assert rec.status == "no_cover" and rec.recommended is None, where
            continue
        assert rec.recommended is not None, where
        assert rec.recommended.monthly_fee == min(p.monthly_fee for p in eligible), where
        saving = row["plan_monthly_fee"] - rec.recommended.monthly_fee
        assert rec.monthly_saving == saving, where
        expected = "fits" if saving == 0 else "recommend" if saving > 0 else "upgrade"
        assert rec.status == expected, where
        assert rec.kept_5g == five_g
        assert rec.explanation["zh-CN"] and rec.explanation["en"]


def test_5g_is_kept_unless_stated() -> None:
    catalogue = parse_catalogue(PLANS_FILE)
    row = profile("5G畅享套餐 199元", "3", "60")
    kept = recommend_plan(catalogue=catalogue, customer=row)
    assert kept.recommended is not None and kept.recommended.name == "5G智享套餐 98元"
    assert kept.kept_5g and "5G" in kept.explanation["en"]
    assert kept.monthly_saving == 101
    # 3 GB and 60 min × 1.2 fit the 38-yuan 4G plan (5 GB, 100 min).
    stated = profile("5G畅享套餐 199元", "3", "60", attributes={"uses_5g": "false"})
    no_5g = recommend_plan(catalogue=catalogue, customer=stated)
    assert no_5g.recommended is not None and no_5g.recommended.name == "4G飞享套餐 38元"
    assert not no_5g.kept_5g and no_5g.monthly_saving == 161
    allowed = recommend_plan(catalogue=catalogue, customer=row, allow_4g=True)
    assert allowed.recommended == no_5g.recommended


def test_restricted_plans_only_for_their_segment() -> None:
    catalogue = parse_catalogue(PLANS_FILE)
    tiny = ("0.05", "10")
    mass = recommend_plan(catalogue=catalogue, customer=profile("4G飞享套餐 38元", *tiny))
    senior = recommend_plan(
        catalogue=catalogue, customer=profile("4G飞享套餐 38元", *tiny, segment="senior")
    )
    assert mass.recommended is not None and mass.recommended.name == "4G飞享套餐 18元"
    assert senior.recommended is not None and senior.recommended.name == "神州行畅听卡 8元"


def test_no_recommendation_without_usage_says_why() -> None:
    catalogue = parse_catalogue(PLANS_FILE)
    missing = recommend_plan(catalogue=catalogue, customer=profile("5G智享套餐 98元", "12", None))
    assert missing.status == "unknown_usage" and missing.recommended is None
    assert "voice_used_min is not in the profile" in missing.explanation["en"]
    assert "voice_used_min" in missing.explanation["zh-CN"]
    garbled = recommend_plan(catalogue=catalogue, customer=profile("5G智享套餐 98元", "lots", "-3"))
    assert garbled.status == "unknown_usage"
    assert "'lots' is not a number" in garbled.explanation["en"]
    assert "'-3' is not a usage" in garbled.explanation["en"]
    nobody = recommend_plan(catalogue=catalogue, customer=None)
    assert nobody.status == "no_customer" and nobody.explanation["zh-CN"]


def test_operator_catalogue_from_the_setting(tmp_path: Path) -> None:
    own = tmp_path / "plans.yaml"
    own.write_text(
        "headroom: 0.5\nplans:\n"
        "  - {name: Basic, monthly_fee: 10, data_gb: 2, voice_minutes: 100}\n"
        "  - {name: Plus, monthly_fee: 30, data_gb: 20, voice_minutes: 500, is_5g: true}\n",
        encoding="utf-8",
    )
    settings = Settings(
        home=tmp_path / "home", env="test", secret_key="test-key", assist_plans_path=own
    )
    catalogue = load_catalogue(settings)
    assert [p.name for p in catalogue.plans] == ["Basic", "Plus"] and catalogue.headroom == 0.5
    row = {
        "id": "c1",
        "plan_name": "Legacy",
        "plan_monthly_fee": 50.0,
        "plan_data_gb": 50.0,
        "plan_voice_minutes": 1000.0,
        "plan_is_5g": False,
        "attributes": {"data_used_gb": "1.5", "voice_used_min": "50"},
    }
    # 1.5 GB × 1.5 = 2.25 GB > 2 GB: the headroom of this file rules Basic out.
    rec = recommend_plan(catalogue=catalogue, customer=row)
    assert rec.recommended is not None and rec.recommended.name == "Plus"
    assert rec.monthly_saving == 20 and "50%" in rec.explanation["en"]

    own.write_text(
        "plans:\n  - {name: A, monthly_fee: 10, data_gb: 1, voice_minutes: 1}\n"
        "  - {name: B, monthly_fee: -5, data_gb: 1, voice_minutes: 1}\n",
        encoding="utf-8",
    )
    with pytest.raises(UnusableInputError, match=r"plans\.plan 2\.monthly_fee"):
        load_catalogue(settings)
    own.write_text("plans:\n  - {name: A, monthly_fee: 1, data_gb: 1, voice_minutes: 1, gb: 2}\n")
    with pytest.raises(UnusableInputError, match=r"plan 1\.gb"):
        parse_catalogue(own)
    with pytest.raises(UnusableInputError, match="no such plan catalogue"):
        parse_catalogue(tmp_path / "missing.yaml")


def test_profile_lookup_by_real_id_and_pseudonym(settings: Settings) -> None:
    from voxloop.ingest.service import ingest_records

    ingest_records(
        settings=settings,
        kind="customer",
        records=[
            {
                "id": "13800138000",
                "region": {"province": "江苏", "city": "苏州"},
                "plan": {"name": "4G飞享套餐 58元", "monthly_fee": 58, "data_gb": 10},
                "attributes": {"data_used_gb": "2.5", "voice_used_min": "40"},
            }
        ],
    )
    by_real = customer_profile(settings=settings, customer_id="13800138000")
    assert by_real is not None and by_real["id"] != "13800138000"
    assert by_real["province"] == "江苏" and by_real["attributes"]["data_used_gb"] == "2.5"
    by_pseudonym = customer_profile(settings=settings, customer_id=by_real["id"])
    assert by_pseudonym == by_real
    assert customer_profile(settings=settings, customer_id="10000000000") is None


def test_pseudonym_is_the_one_ingest_stores(settings: Settings) -> None:
    import pyarrow as pa

    from voxloop.assist.plans import pseudonym_of
    from voxloop.ingest.service import pseudonymise

    ids = ["13800138000", "客户-甲", "a'b|c", " x "]
    stored = pseudonymise(key=settings.secret_key, ids=pa.array(ids)).to_pylist()
    assert [pseudonym_of(settings=settings, customer_id=i) for i in ids] == stored


def test_generated_overpaying_customers_are_found(settings: Settings, tmp_path: Path) -> None:
    import pyarrow as pa

    from voxloop.demo.generator import generate_operator
    from voxloop.ingest.service import ingest_file, pseudonymise
    from voxloop.store.service import lake_connection

    out = tmp_path / "operator"
    generate_operator(customers=1500, days=14, seed=11, out_dir=out)
    truth = json.loads((out / "ground_truth.json").read_text(encoding="utf-8"))
    if "overpaying_customers" not in truth:
        pytest.skip("this generator plants no overpaying customers")
    ingest_file(settings=settings, path=out / "customers.csv", kind="customer")
    con = lake_connection(settings, ("customers",))
    cols = ["id", "plan_name", "plan_monthly_fee", "plan_data_gb", "plan_voice_minutes"]
    cols += ["plan_is_5g", "segment", "attributes"]
    rows = [
        dict(zip(cols, r, strict=True))
        for r in con.execute(f"SELECT {', '.join(cols)} FROM customers").fetchall()
    ]
    con.close()
    assert len(rows) == 1500
    catalogue = load_catalogue(settings)
    flagged = set()
    for row in rows:
        row["attributes"] = dict(row["attributes"] or {})
        # The generator's rule lets any customer move to 4G; so does this comparison.
        rec = recommend_plan(catalogue=catalogue, customer=row, allow_4g=True)
        cheap = rec.recommended is not None and (
            rec.recommended.monthly_fee <= 0.5 * row["plan_monthly_fee"]
        )
        if rec.status == "recommend" and cheap:
            flagged.add(row["id"])
    planted = pseudonymise(key=settings.secret_key, ids=pa.array(truth["overpaying_customers"]))
    assert len(planted) > 20
    assert flagged == set(planted.to_pylist())
