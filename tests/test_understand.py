"""Understand stage end to end: lake voices -> readings, training, corrections, API, CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
import typer
from typer.testing import CliRunner

from tests.conftest import admin_client
from voxloop.config import Settings
from voxloop.ingest.schemas import VOICE_SCHEMA
from voxloop.store.service import lake_connection, write_part
from voxloop.understand import service
from voxloop.understand.reading import READING_SCHEMA, build_bundle, read_table
from voxloop.understand.taxonomy import default_taxonomy, load_taxonomy

PHRASES = {
    "BILL": [
        "这个月话费莫名其妙多扣了{n}元",
        "没订过的业务每月扣我{n}块钱",
        "账单金额不对多收了{n}元",
    ],
    "HBB": ["家里宽带断网{n}天了", "宽带报修{n}天没人上门", "光猫红灯宽带{n}小时上不了网"],
    "SVC": ["10086打了{n}次都转不了人工", "客服态度很差挂了我{n}次电话", "人工客服排队{n}分钟"],
    "MNET": ["小区手机信号只有{n}格", "地下室没有信号打不了电话{n}次", "4G网速只有{n}K"],
}


def _voices(n_per: int, *, start: int = 0) -> pa.Table:
    now = datetime(2026, 9, 1, tzinfo=UTC)
    rows = []
    i = start
    for code, templates in PHRASES.items():
        for k in range(n_per):
            text = templates[k % len(templates)].format(n=k + 2)
            rows.append(
                {
                    "id": f"v{i}",
                    "source": "test",
                    "kind": "complaint",
                    "received_at": now + timedelta(hours=i),
                    "customer_id": f"c{i % 7}",
                    "channel": "hotline_10086",
                    "text": text,
                    "attributes": [("scenario", code)],
                    "pii_counts": [],
                    "content_hash": f"h{i}",
                    "ingested_at": now,
                    "batch_id": "b1",
                }
            )
            i += 1
    return pa.Table.from_pylist(rows, schema=VOICE_SCHEMA)


def test_read_table_schema_and_precedence(tmp_path: Path) -> None:
    extra = tmp_path / "rules.yaml"
    extra.write_text(
        """
name: op
version: op-1
scenarios:
  - {code: BILL, zh: 资费, en: Charges, rules: [{id: op-bill, pattern: "乱扣费", priority: 10}]}
  - {code: SUPV, zh: 监督, en: Supervision, rules: [{id: op-miit, pattern: "工信部", priority: 1}]}
""",
        encoding="utf-8",
    )
    bundle = build_bundle(taxonomy=load_taxonomy(extra))
    texts = [
        "话费被乱扣费了，我要去工信部投诉",  # both rules match: the higher priority wins
        "家里宽带断网两天了没人修",
        "嗯",
        "I will call the press and my lawyer about this bill",
    ]
    table = pa.table({"id": ["a", "b", "c", "d"], "text": texts})
    out = read_table(table, bundle=bundle)
    assert out.schema == READING_SCHEMA
    rows = out.to_pylist()
    assert rows[0]["scenario"] == "BILL"
    assert rows[0]["scenario_source"] == "rule:op-bill"
    assert rows[0]["scenario_confidence"] == 1.0
    assert rows[0]["escalation_risk"] and "工信部" in rows[0]["urgency_triggers"]
    assert [r["intent"] for r in rows] == ["escalate", "repair", "complain", "escalate"]
    assert rows[1]["scenario"] == "HBB" and rows[1]["scenario_source"] == "model:text_svm"
    assert rows[1]["subcategory"] in {
        c.code for c in default_taxonomy().scenario("HBB").subcategories
    }
    assert rows[2]["scenario_source"] == "uncertain" and rows[2]["needs_review"]
    assert set(rows[3]["urgency_triggers"]) >= {"press", "lawyer"}
    assert all(r["model_version"] == bundle.version for r in rows)
    assert {r["sentiment"] for r in rows} <= {"negative", "neutral", "positive"}
    with pytest.raises(ValueError, match="'text'"):
        read_table(pa.table({"id": ["x"]}), bundle=bundle)


def test_pipeline_train_and_correct(settings: Settings) -> None:
    assert service.read_new_voices(settings=settings) == {"read": 0, "model_version": None}
    write_part(settings, "voices", _voices(6))
    first = service.read_new_voices(settings=settings)
    # No model yet: the first run trains on the store's labelled history, then reads.
    assert first["read"] == 24 and first["model_version"].startswith("u")
    assert first["trained"]["n_history"] == 24
    # Idempotent: nothing new for the same model version, and no retraining.
    second = service.read_new_voices(settings=settings)
    assert second["read"] == 0 and second["trained"] is None
    write_part(settings, "voices", _voices(1, start=100))
    assert service.read_new_voices(settings=settings)["read"] == 4

    # Repeat contacts: customer c0 wrote several voices within 30 days.
    con = lake_connection(settings, ("readings",))
    triggers = con.execute("SELECT flatten(list(urgency_triggers)) FROM readings").fetchone()
    assert any(t.startswith("repeat_contact:") for t in triggers[0])

    # A human correction is a new, later reading row; the old one stays.
    fixed = service.correct_reading(
        settings=settings,
        voice_id="v0",
        correction=service.ReadingCorrection(scenario="PRIV", subcategory="data_leak"),
    )
    assert fixed["scenario_source"] == "human" and fixed["scenario"] == "PRIV"
    latest = service.get_reading(settings=settings, voice_id="v0")
    assert latest["scenario"] == "PRIV" and latest["subcategory"] == "data_leak"
    n_rows = con.execute("SELECT count(*) FROM readings WHERE voice_id = 'v0'").fetchone()
    assert n_rows is not None and n_rows[0] == 2  # the model reading stays (append-only)
    with pytest.raises(service.InvalidCorrectionError, match="unknown scenario"):
        service.correct_reading(
            settings=settings, voice_id="v0", correction=service.ReadingCorrection(scenario="XYZ")
        )
    with pytest.raises(service.NotFoundError, match="no reading"):
        service.get_reading(settings=settings, voice_id="missing")

    # Training uses attributes.scenario history and the correction; a new version re-reads all.
    texts, labels = service.labelled_history(settings=settings, codes={"BILL", "PRIV", "HBB"})
    assert len(texts) == len(labels) and labels.count("PRIV") == 1 and "SVC" not in labels
    res = service.train(settings=settings)
    assert res["n_history"] == 28 and res["model_version"].startswith("u")
    assert (Path(res["path"]) / "manifest.json").exists()
    again = service.read_new_voices(settings=settings)
    assert again["read"] == 28 and again["model_version"] == res["model_version"]
    con = lake_connection(settings, ("readings",))
    versions = con.execute("SELECT count(DISTINCT model_version) FROM readings").fetchone()
    assert versions is not None and versions[0] == 3  # default, trained, human


def test_api_and_page(settings: Settings) -> None:
    from voxloop.api.app import create_app

    write_part(settings, "voices", _voices(2))
    service.read_new_voices(settings=settings)
    client = admin_client(create_app(settings))
    got = client.get("/api/v1/voices/v1/reading")
    assert got.status_code == 200 and got.json()["voice_id"] == "v1"
    patched = client.patch(
        "/api/v1/voices/v1/reading", json={"scenario": "SVC", "intent": "escalate"}
    )
    assert patched.status_code == 200
    body = patched.json()
    assert body["scenario"] == "SVC" and body["scenario_source"] == "human"
    assert client.get("/api/v1/voices/v1/reading").json()["intent"] == "escalate"
    assert client.get("/api/v1/voices/nope/reading").status_code == 404
    bad = client.patch("/api/v1/voices/v1/reading", json={"sentiment": "furious"})
    assert bad.status_code == 422
    wrong = client.patch("/api/v1/voices/v1/reading", json={"subcategory": "no_such_sub"})
    assert wrong.status_code == 400 and "subcategory" in wrong.json()["detail"]
    for lang, word in (("zh-CN", "声音理解"), ("en", "Voice understanding")):
        page = client.get(f"/understand?lang={lang}")
        assert page.status_code == 200 and word in page.text


def test_cli_evaluate_and_train(settings: Settings, tmp_path: Path) -> None:
    from voxloop.cli.understand import register

    app, evaluate, analyze = typer.Typer(), typer.Typer(), typer.Typer()
    app.add_typer(evaluate, name="evaluate")
    register(app=app, evaluate=evaluate, analyze=analyze)
    data = tmp_path / "d.jsonl"
    table = _voices(5)
    with data.open("w", encoding="utf-8") as fh:
        for row in table.select(["text", "attributes"]).to_pylist():
            label = dict(row["attributes"])["scenario"]
            fh.write(json.dumps({"t": row["text"], "y": label}, ensure_ascii=False) + "\n")
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "evaluate",
            "text",
            "--train",
            str(data),
            "--text-col",
            "t",
            "--label-col",
            "y",
            "--cv",
            "2",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert set(out) == {
        "accuracy",
        "macro_f1",
        "n_train",
        "n_test",
        "train_seconds",
        "predict_per_second",
    }
    assert out["n_train"] == 10 and 0 <= out["accuracy"] <= 1
    res = runner.invoke(
        app,
        [
            "evaluate",
            "text",
            "--train",
            str(data),
            "--test",
            str(data),
            "--text-col",
            "t",
            "--label-col",
            "y",
        ],
    )
    assert res.exit_code == 0 and "macro-F1" in res.output and "BILL" in res.output

    env = {"VOXLOOP_HOME": str(settings.home), "VOXLOOP_ENV": "dev"}
    write_part(settings, "voices", _voices(2))
    res = runner.invoke(app, ["train", "--json"], env=env)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["n_history"] == 8
    res = runner.invoke(app, ["understand", "--json"], env=env)
    assert res.exit_code == 0 and json.loads(res.output)["read"] == 8

    # A supervised sentiment model from a labelled file replaces the lexicon one.
    senti = tmp_path / "senti.csv"
    good = ["服务很好很满意", "速度快态度好", "非常好用推荐", "客服耐心解决了问题"]
    bad = ["太差了再也不用", "一直断网很生气", "乱扣费垃圾", "态度恶劣没人管"]
    senti.write_text(
        "review,label\n" + "".join(f"{t},1\n" for t in good) + "".join(f"{t},0\n" for t in bad),
        encoding="utf-8",
    )
    args = ["train", "--sentiment-data", str(senti), "--sentiment-columns", "review,label"]
    res = runner.invoke(app, [*args, "--json"], env=env)
    assert res.exit_code == 0, res.output
    version = json.loads(res.output)["model_version"]
    bundle = service.load_bundle(settings=settings, version=version)
    assert type(bundle.sentiment).__name__ == "TextClassifier"
    assert service.read_new_voices(settings=settings)["read"] == 8
    latest = service.get_reading(settings=settings, voice_id="v0")
    assert latest["model_version"] == version
    assert latest["sentiment"] in {"negative", "positive"}
    senti.write_text("review,label\n好,9\n差,0\n", encoding="utf-8")
    res = runner.invoke(app, [*args, "--json"], env=env)
    assert res.exit_code != 0 and "not sentiment labels" in str(res.exception)


def test_cli_evaluate_with_another_domain(tmp_path: Path) -> None:
    import csv

    from tests.conftest import shared_file
    from voxloop.cli.understand import register

    app, evaluate, analyze = typer.Typer(), typer.Typer(), typer.Typer()
    app.add_typer(evaluate, name="evaluate")
    register(app=app, evaluate=evaluate, analyze=analyze)
    files = []
    for name, n in (("usual_eval.csv", 300), ("virus_train.csv", 600)):
        with shared_file("smp2020_ewect", name).open(encoding="utf-8-sig") as fh:
            rows = [r for _, r in zip(range(n), csv.DictReader(fh), strict=False)]
        out = tmp_path / name
        with out.open("w", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["content", "label"], extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        files.append(out)
    args = ["evaluate", "text", "--train", str(files[0]), "--text-col", "content"]
    res = CliRunner().invoke(
        app, [*args, "--also-train", str(files[1]), "--task", "emotion", "--cv", "3", "--json"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    # Every training fold holds two thirds of the 300 usual posts plus all 600 virus posts.
    assert out["n_train"] == 800 and out["n_test"] == 100
    assert 0.0 < out["macro_f1"] <= 1.0


def test_a_taxonomy_given_to_train_stays_for_later_retrains(
    settings: Settings, tmp_path: Path
) -> None:
    """`voxloop train --taxonomy F` once; later retrains re-read F, or keep it if F is gone."""
    extra = tmp_path / "op.yaml"
    extra.write_text(
        """
name: op
version: op-1
scenarios:
  - code: ROAM
    zh: 漫游
    en: Roaming
    subcategories:
      - {code: fees, zh: 漫游费, en: Roaming fees, examples: [出国漫游扣费太贵, 国际漫游开不了]}
""",
        encoding="utf-8",
    )
    write_part(settings, "voices", _voices(3))
    first = service.train(settings=settings, taxonomy_path=extra)
    assert "ROAM" in {s.code for s in service.load_bundle(settings=settings).taxonomy.scenarios}
    again = service.train(settings=settings)  # e.g. after corrections or a new encoder
    assert again["model_version"] != first["model_version"]
    bundle = service.load_bundle(settings=settings)
    assert "ROAM" in {s.code for s in bundle.taxonomy.scenarios}
    assert bundle.info["taxonomy_file"] == str(extra.resolve())
    extra.unlink()
    kept = service.train(settings=settings)
    bundle = service.load_bundle(settings=settings, version=kept["model_version"])
    assert "ROAM" in {s.code for s in bundle.taxonomy.scenarios}
    assert "not found" in bundle.info["taxonomy_missing"]


def test_spoken_questions_read_as_inquiries() -> None:
    """Intent rules on real hotline turns, scored against MobileCS's own user-intent labels."""
    import numpy as np

    from tests.conftest import shared_file

    dialogues = json.loads(shared_file("mobilecs_examples", "example.json").read_text("utf-8"))
    turns = [t for d in dialogues for t in d["content"] if t.get("[SPEAKER 2]")]
    texts = [t["[SPEAKER 2]"] for t in turns]
    asks = np.array([("询问" in t["用户意图"]) or ("求助-查询" in t["用户意图"]) for t in turns])
    table = pa.table({"id": [f"m{i}" for i in range(len(texts))], "text": texts})
    intent = np.array(read_table(table, bundle=build_bundle(taxonomy=default_taxonomy()))["intent"])
    said = intent == "inquire"
    precision = (said & asks).sum() / said.sum()
    recall = (said & asks).sum() / asks.sum()
    # Measured: precision 0.76, recall 0.86 on 29 asking turns (before the question-word
    # rules: 0.77 and 0.34).
    assert precision >= 0.7 and recall >= 0.8, (precision, recall)
