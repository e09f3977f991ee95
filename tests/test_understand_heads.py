"""Sentiment and emotion heads pooled with a sentence encoder; one encoding per voice."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa

from tests.test_understand_default_encoder import CountingEncoder
from voxloop.config import Settings
from voxloop.understand.corpora import CorpusEmotion, CorpusSentiment, chinese_mask, fit_pool
from voxloop.understand.embed_cache import CachedEncoder, attach_cache, cache_folder
from voxloop.understand.encoders import SELECTIVE_THRESHOLDS
from voxloop.understand.estimators import TextClassifier
from voxloop.understand.reading import build_bundle, read_table
from voxloop.understand.taxonomy import default_taxonomy

_POS = ["很好吃", "味道不错", "送得很快", "非常满意", "好评推荐", "服务周到"]
_NEG = ["太难吃了", "送得太慢", "非常失望", "差评退款", "态度很差", "凉了不好"]


class LabelEncoder:
    """Toy encoder whose vectors carry a label the texts' characters do not show."""

    def __init__(self, labels: dict[str, int]) -> None:
        self.labels = labels
        self.calls = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += len(texts)
        rng = np.random.default_rng(len(texts))
        out = rng.normal(0.0, 0.1, size=(len(texts), 8))
        out[:, 0] += [2.0 * self.labels.get(t, 0) - 1.0 for t in texts]
        return out.astype(np.float32)


def test_fit_pool_keeps_the_probe_only_when_inner_cv_says_it_helps() -> None:
    rng = np.random.default_rng(0)
    # Texts are random codes: no character tells the label, the embedding does.
    texts = [f"编号{rng.integers(10**9)}" for _ in range(240)]
    labels = ["positive" if i % 2 else "negative" for i in range(240)]
    enc = LabelEncoder({t: int(y == "positive") for t, y in zip(texts, labels, strict=True)})
    classes = np.array(["negative", "positive"])
    pool = fit_pool(
        make_lexical=TextClassifier,
        classes=classes,
        texts=texts,
        labels=labels,
        emb=enc.encode(texts),
        metric="accuracy",
    )
    assert pool.weight < 1.0 and pool.probe is not None
    assert pool.cv[pool.weight] > pool.cv[1.0] + 0.2
    # Noise embeddings and telling characters: the lexical model alone, no probe kept.
    words = [(_POS if y == "positive" else _NEG)[i % 6] + f"{i}" for i, y in enumerate(labels)]
    noise = np.random.default_rng(1).normal(size=(240, 8)).astype(np.float32)
    pool = fit_pool(
        make_lexical=TextClassifier,
        classes=classes,
        texts=words,
        labels=labels,
        emb=noise,
        metric="accuracy",
    )
    assert pool.weight == 1.0 and pool.probe is None


def _corpus(n: int = 120) -> tuple[list[str], list[str]]:
    texts = [(_POS if i % 2 else _NEG)[i % 6] + "，" + "的了吗"[i % 3] * (i % 4) for i in range(n)]
    return texts, ["positive" if i % 2 else "negative" for i in range(n)]


def test_reading_encodes_each_voice_once_for_all_heads(tmp_path: Path) -> None:
    inner = CountingEncoder()
    enc = CachedEncoder(inner=inner, encoder_id="toy", folder=tmp_path / "cache")
    texts, labels = _corpus()
    sentiment = CorpusSentiment(encoder=enc).fit(texts, labels)
    emo_y = ["joy" if y == "positive" else "anger" for y in labels]
    emotion = CorpusEmotion(encoder=enc).fit(texts, emo_y)
    # Force the encoder path on in both heads, whatever their inner CV chose.
    for head in (sentiment, emotion):
        assert head.pool_ is not None
        if head.pool_.probe is None:
            from voxloop.understand.corpora import _probe

            y = np.searchsorted(head.model_.classes_, labels if head is sentiment else emo_y)
            head.pool_.probe = _probe(balanced=False).fit(enc.encode(texts), y)
            head.pool_.weight = 0.5
        assert head.uses_encoder
    bundle = build_bundle(
        taxonomy=default_taxonomy(), encoder=enc, sentiment=sentiment, emotion=emotion
    )
    voices = [f"我的话费怎么扣了这么多 {i}" for i in range(50)] + ["宽带 broken again"] * 10
    table = pa.table({"id": [str(i) for i in range(60)], "text": voices})
    # A scenario model sure of nothing pools every voice (no selective saving).
    bundle.scenario.encode_below_ = float("inf")
    before = inner.calls
    out = read_table(table, bundle=bundle)
    assert out.num_rows == 60
    assert inner.calls - before == 51  # 50 distinct Chinese texts and one repeated English
    assert set(out.column("emotion").to_pylist()) <= {
        "joy",
        "anger",
        "neutral",
        "sadness",
        "fear",
        "surprise",
    }
    # Re-reading only looks vectors up in the cache.
    read_table(table, bundle=bundle)
    assert inner.calls - before == 51
    # The pooled heads agree with reading them without the shared embeddings.
    _, alone = sentiment.read(voices[:50])
    np.testing.assert_allclose(alone, out.column("sentiment_score").to_numpy()[:50])
    # A scenario model sure of everything pools nothing: only the Chinese voices, which
    # the corpus heads read, are encoded; the English one keeps the lexicons.
    bundle.scenario.encode_below_ = 0.0
    fresh = CachedEncoder(inner=CountingEncoder(), encoder_id="toy", folder=None)
    for model in (bundle.scenario, sentiment, emotion):
        model.encoder = fresh
    again = read_table(table, bundle=bundle)
    assert fresh.inner.calls == 50
    assert again.column("sentiment").to_pylist()[50:] == out.column("sentiment").to_pylist()[50:]


def test_pooled_heads_survive_pickling_and_get_the_lake_cache(tmp_path: Path) -> None:
    enc = CachedEncoder(inner=CountingEncoder(), encoder_id="toy", folder=tmp_path / "c")
    texts, labels = _corpus()
    head = CorpusSentiment(encoder=enc).fit(texts, labels)
    loaded = pickle.loads(pickle.dumps(head))
    assert loaded.encoder.folder is None  # the lake path belongs to one machine
    settings = Settings(home=tmp_path / "home", env="test", secret_key="t")
    attach_cache(loaded, settings)
    assert loaded.encoder.folder == cache_folder(settings, "toy")
    np.testing.assert_allclose(loaded.read(texts[:8])[1], head.read(texts[:8])[1])


class RecordingEncoder(CountingEncoder):
    """CountingEncoder that also keeps the texts it was asked to encode."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.seen += list(texts)
        return super().encode(texts)


def test_reading_encodes_only_voices_the_lexical_scenario_model_is_unsure_of() -> None:
    enc = RecordingEncoder()
    bundle = build_bundle(taxonomy=default_taxonomy(), encoder=enc)
    scenario = bundle.scenario
    assert scenario.selective_cv_  # inner CV scored the thresholds on the taxonomy examples
    voices = [
        "家里宽带断网两天了没人修",
        "话费怎么多扣了五十块",
        "你好",
        "套餐能不能换一个便宜的",
        "信号太差了打不通电话",
        "嗯嗯好的谢谢",
        "我要投诉你们的客服态度",
        "流量用超了怎么收费",
    ]
    p_text = scenario.text_.predict_proba(voices)
    top = np.max(p_text, axis=1)
    # A threshold that splits these voices, whatever inner CV chose on the toy taxonomy.
    scenario.encode_below_ = float(np.median(top))
    unsure = top < scenario.encode_below_
    assert 0 < unsure.sum() < len(voices)
    enc.seen = []
    table = pa.table({"id": [str(i) for i in range(len(voices))], "text": voices})
    out = read_table(table, bundle=bundle)
    assert sorted(enc.seen) == sorted(v for v, u in zip(voices, unsure, strict=True) if u)
    # The reading's confidences are the model's own (pooled where unsure, lexical elsewhere).
    model = scenario.predict_proba(voices).max(axis=1)
    rule = np.array([s.startswith("rule:") for s in out.column("scenario_source").to_pylist()])
    conf = out.column("scenario_confidence").to_numpy()
    np.testing.assert_allclose(conf[~rule], model[~rule])
    np.testing.assert_allclose(model[~unsure], top[~unsure])
    # Without selective encoding every voice is encoded.
    full = build_bundle(taxonomy=default_taxonomy(), encoder=enc, selective_encoding=False)
    enc.seen = []
    read_table(table, bundle=full)
    assert sorted(enc.seen) == sorted(voices)


def test_pooled_emotion_head_encodes_only_unsure_chinese_voices() -> None:
    rng = np.random.default_rng(0)
    # Half the texts tell their label by characters, half only through the embedding.
    words = [(_POS if i % 2 else _NEG)[i % 6] + f"{i}" for i in range(120)]
    codes = [f"编号{rng.integers(10**9)}" for _ in range(120)]
    texts = words + codes
    labels = ["joy" if i % 2 else "anger" for i in range(240)]
    enc = LabelEncoder({t: int(y == "joy") for t, y in zip(texts, labels, strict=True)})
    emotion = CorpusEmotion(encoder=enc, selective=True).fit(texts, labels)
    assert emotion.uses_encoder and emotion.pool_ is not None
    assert emotion.pool_.encode_below in SELECTIVE_THRESHOLDS
    voices = [*words[:10], *codes[:10], "broken again, no signal"]
    chinese = chinese_mask(pa.array(voices))
    rows, lexical = emotion.embedding_rows(pa.array(voices), chinese=chinese)
    assert lexical is not None and not rows[-1]  # the English voice keeps the lexicon
    # A threshold between the sure and the unsure texts, whatever inner CV chose.
    top = np.max(lexical, axis=1)
    emotion.pool_.encode_below = float(np.median(top))
    rows, lexical = emotion.embedding_rows(pa.array(voices), chinese=chinese)
    assert 0 < rows.sum() < chinese.sum()
    enc.calls = 0
    out = emotion.read(voices)
    assert enc.calls == rows.sum()
    sure = np.flatnonzero(chinese & ~rows)
    lex = emotion.model_.classes_[np.argmax(lexical, axis=1)]
    assert out[sure].tolist() == lex[np.flatnonzero(~rows[chinese])].tolist()
    # Through the reading: the same labels, the shared embeddings only for those rows.
    bundle = build_bundle(taxonomy=default_taxonomy(), emotion=emotion)
    enc.calls = 0
    table = pa.table({"id": [str(i) for i in range(len(voices))], "text": voices})
    assert read_table(table, bundle=bundle).column("emotion").to_pylist() == out.tolist()
    assert enc.calls == rows.sum()
    # The default head (selective=False) pools every Chinese voice.
    full = CorpusEmotion(encoder=enc).fit(texts, labels)
    assert full.pool_ is not None and full.pool_.encode_below == float("inf")
    rows, _ = full.embedding_rows(pa.array(voices), chinese=chinese)
    assert rows.tolist() == chinese.tolist()
