"""Question matcher on real AFQMC pairs: it learns, saves and loads, and the CLI prints JSON."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from tests.conftest import shared_file
from voxloop.assist.matcher import QuestionMatcher, read_pairs
from voxloop.understand.encoders import Usem3Encoder


def _subset(tmp_path: Path, start: int, rows: int) -> Path:
    src = shared_file("afqmc", "train.csv")
    out = tmp_path / f"afqmc_{start}.csv"
    with src.open(encoding="utf-8") as fh, out.open("w", encoding="utf-8", newline="") as w:
        reader = list(csv.reader(fh))
        writer = csv.writer(w)
        writer.writerow(reader[0])
        writer.writerows(reader[1 + start : 1 + start + rows])
    return out


def test_matcher_ranks_held_out_pairs_and_round_trips(tmp_path: Path) -> None:
    train_pairs, train_y = read_pairs(_subset(tmp_path, 0, 2000))
    test_pairs, test_y = read_pairs(_subset(tmp_path, 30_000, 600))
    model = QuestionMatcher(encoder=Usem3Encoder(), n_estimators=150).fit(train_pairs, train_y)
    proba = model.predict_proba(test_pairs)
    # Threshold-free check: same-intent pairs score higher than different-intent ones.
    assert roc_auc_score(test_y, proba) > 0.6
    loaded = QuestionMatcher.load(model.save(tmp_path / "matcher.pkl"))
    assert np.allclose(loaded.predict_proba(test_pairs[:50]), proba[:50])


def test_evaluate_match_cli_prints_accuracy_and_f1(tmp_path: Path) -> None:
    from voxloop.cli.main import _register_domains, app

    _register_domains()
    train = _subset(tmp_path, 0, 600)
    test = _subset(tmp_path, 30_000, 200)
    res = CliRunner().invoke(
        app, ["evaluate", "match", "--train", str(train), "--test", str(test), "--json"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert 0.0 <= out["accuracy"] <= 1.0 and 0.0 <= out["f1"] <= 1.0
    assert out["n_train"] == 600 and out["n_test"] == 200
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence1,sentence2,label\n花呗怎么还,花呗如何还款,yes\n", encoding="utf-8")
    refused = CliRunner().invoke(app, ["evaluate", "match", "--train", str(bad), "--json"])
    assert refused.exit_code != 0 and "row 2: field 'label'" in str(refused.exception)
