"""Optional encoder plug-ins: OpenAI-compatible endpoint (mocked transport) and local model."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import httpx
import numpy as np
import pytest

from voxloop.errors import ConfigError
from voxloop.understand.encoders import (
    EncoderClassifier,
    LocalSentenceEncoder,
    OpenAIEmbeddingEncoder,
    encoder_from_spec,
)


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


def test_local_sentence_encoder_when_installed() -> None:
    pytest.importorskip("sentence_transformers")
    path = os.environ.get("VOXLOOP_TEST_ENCODER_PATH")
    if not path:
        pytest.skip("set VOXLOOP_TEST_ENCODER_PATH to a local sentence-transformers folder")
    emb = LocalSentenceEncoder(path=path).encode(["hello", "你好"])
    assert emb.shape[0] == 2
