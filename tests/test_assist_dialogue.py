"""Dialogue satisfaction: USS reading and protocol, the model, scores of lake conversations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared_file
from voxloop.assist.dialogue import (
    DialogueSatisfaction,
    evaluate_uss,
    load_uss,
    majority_rating,
    score_conversations,
    three_class,
    uss_path,
    uss_samples,
    write_dissatisfaction,
)
from voxloop.config import Settings
from voxloop.errors import UnusableInputError
from voxloop.understand.reading import build_bundle
from voxloop.understand.taxonomy import default_taxonomy


def _root() -> Path:
    return shared_file("user_satisfaction_simulation_uss", "MWOZ.txt.gz").parent


def test_uss_file_matches_its_published_counts() -> None:
    dialogues = load_uss(_root() / "MWOZ.txt.gz")
    assert len(dialogues) == 1000
    users = sum(1 for d in dialogues for r, _t, _s in d.turns if r == "user")
    assert users == 11_553  # SOURCE.md: user utterances excluding OVERALL
    assert all(d.overall for d in dialogues)
    xs, ys, groups = uss_samples(dialogues, level="exchange")
    assert len(xs) == len(ys) == len(groups) == users
    # The first user turn is rated before anything was said: its context is empty.
    assert xs[0] == [] and groups[0] == 0


def test_labels_follow_the_published_protocol() -> None:
    assert majority_rating([3, 3, 2, 3]) == 3
    assert majority_rating([2, 4]) == 2  # a tie goes to the lower rating
    assert [three_class(r) for r in (1, 2, 3, 4, 5)] == [
        "dissatisfied",
        "dissatisfied",
        "neutral",
        "satisfied",
        "satisfied",
    ]
    with pytest.raises(ValueError):
        majority_rating([])


def test_missing_domain_and_bad_lines_are_named(tmp_path: Path) -> None:
    with pytest.raises(UnusableInputError, match=r"JDDC.*SOURCE.md.*available: MWOZ"):
        uss_path(_root(), "JDDC")
    bad = tmp_path / "BAD.txt"
    bad.write_text("USER\thello\t\t3,x\n", encoding="utf-8")
    with pytest.raises(UnusableInputError, match="line 1"):
        load_uss(bad)


def test_model_fits_predicts_and_round_trips(tmp_path: Path) -> None:
    dialogues = load_uss(_root() / "SGD.txt.gz")
    xs, ys, _ = uss_samples(dialogues[:400], level="dialogue")
    model = DialogueSatisfaction(max_features=2_000).fit(xs[:300], ys[:300])
    proba = model.predict_proba(xs[300:])
    assert proba.shape == (100, 3) and np.allclose(proba.sum(axis=1), 1)
    assert set(model.classes_) == {"dissatisfied", "neutral", "satisfied"}
    loaded = DialogueSatisfaction.load(model.save(tmp_path / "m.pkl"))
    assert np.allclose(loaded.predict_proba(xs[300:]), proba)
    with pytest.raises(ValueError, match="unknown class"):
        DialogueSatisfaction().fit(xs[:10], ["angry"] * 10)


def test_cross_validation_reports_the_protocol_metrics() -> None:
    res = evaluate_uss(root=_root(), domain="CCPE", level="dialogue", folds=10, max_folds=1)
    assert res["samples"] == 50 and res["folds"].startswith("1 of 10")
    assert sum(res["class_counts"].values()) == 50
    for key in ("accuracy", "macro_f1", "uar", "dissatisfied_f1", "majority_accuracy"):
        assert 0.0 <= res[key] <= 1.0
    assert -1.0 <= res["kappa"] <= 1.0
    json.dumps(res)


def test_rules_score_chinese_calls_and_the_model_english_ones() -> None:
    bundle = build_bundle(taxonomy=default_taxonomy())
    angry = "坐席：您好 客户：宽带又断了，还是不行，太差了 坐席：抱歉 客户：算了，解决不了就投诉"
    happy = "坐席：您好 客户：帮我查一下话费 坐席：您的余额是五十元 客户：好的，谢谢，非常满意"
    p, label, method = score_conversations([angry, happy], bundle=bundle)
    assert list(method) == ["rules", "rules"]
    assert p[0] > p[1] and label[0] == "dissatisfied" and label[1] != "dissatisfied"

    dialogues = load_uss(_root() / "MWOZ.txt.gz")[:300]
    xs, ys, _ = uss_samples(dialogues, level="dialogue")
    model = DialogueSatisfaction(max_features=2_000).fit(xs, ys)
    english = "Agent: Hello\nCustomer: I need a hotel in the north\nAgent: Sorry, there is none."
    p2, label2, method2 = score_conversations([english, angry], bundle=bundle, model=model)
    assert list(method2) == ["uss_model", "rules"]
    assert 0.0 <= p2[0] <= 1.0 and label2[0] in {"dissatisfied", "neutral", "satisfied"}


def test_lake_conversations_get_a_dissatisfaction_table(settings: Settings, tmp_path: Path) -> None:
    from voxloop.ingest.service import ingest_path
    from voxloop.store.service import lake_connection, migrate

    migrate(settings)
    rows = [
        {
            "id": f"c{i}",
            "source": "t",
            "kind": kind,
            "received_at": "2026-09-01T10:00:00+08:00",
            "customer_id": f"cust{i}",
            "channel": "hotline_10086",
            "text": text,
        }
        for i, (kind, text) in enumerate(
            [
                ("call_transcript", "坐席：您好 客户：还是不行，我要投诉 坐席：抱歉 客户：太差了"),
                ("chat", "客户：查话费 坐席：余额五十元 客户：好的谢谢"),
                ("complaint", "宽带断了"),
            ]
        )
    ]
    # A later voice, so the calls lie before the customers' feature cut-off (the newest record).
    rows[2]["received_at"] = "2026-09-05T10:00:00+08:00"
    path = tmp_path / "voices.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), "utf-8")
    ingest_path(settings=settings, path=path, kind=None, mapping=None)
    result = write_dissatisfaction(settings=settings)
    assert result["scored"] == 2 and result["by_method"] == {"rules": 2}
    con = lake_connection(settings, ("dialogue_satisfaction",))
    got = dict(con.execute("SELECT voice_id, satisfaction FROM dialogue_satisfaction").fetchall())
    assert got["c0"] == "dissatisfied" and got["c1"] != "dissatisfied" and "c2" not in got
    # A second run scores only what is new: nothing here.
    assert write_dissatisfaction(settings=settings)["scored"] == 0
    # The churn features read it: the mean predicted dissatisfaction of a customer's calls.
    from voxloop.analyze.service import churn_frame
    from voxloop.ingest.service import ingest_records

    customers = [{"id": f"cust{i}", "region": {"province": "江苏"}} for i in range(3)]
    assert ingest_records(settings=settings, kind="customer", records=customers).stored == 3
    frame = churn_frame(settings=settings)
    values = frame.sort_values("dialogue_dissatisfaction")["dialogue_dissatisfaction"].tolist()
    assert values[0] < values[1] and values[2] != values[2]  # the complaint-only customer: NaN
