"""Read a batch of voices: scenario, subcategory, intent, sentiment, emotion, urgency.

Scenario precedence, highest first (recorded in ``scenario_source``):

1. ``human``: a correction stored through the API (a separate, later reading row);
2. ``rule:<id>``: an operator regex rule of the taxonomy; the highest ``priority`` wins,
   ties by file order;
3. ``model:<name>``: the scenario model, when its probability reaches the taxonomy's
   ``uncertain_threshold``;
4. ``uncertain``: the model's best guess is kept in ``scenario`` but ``needs_review`` is set.

Everything here works on whole Arrow arrays (one featurisation and one matrix product per
batch), so it can run under Spark's ``mapInArrow`` as well as in the local pipeline.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import sparse

from voxloop.understand.corpora import CorpusEmotion, CorpusSentiment, chinese_mask
from voxloop.understand.encoders import Encoder, HybridClassifier
from voxloop.understand.estimators import TextClassifier
from voxloop.understand.lexicon import LexiconEmotion, LexiconSentiment, lexicon
from voxloop.understand.taxonomy import Taxonomy
from voxloop.understand.urgency import assess

READINGS_TABLE = "readings"

READING_SCHEMA = pa.schema(
    [
        pa.field("voice_id", pa.string(), nullable=False),
        pa.field("scenario", pa.string()),
        pa.field("subcategory", pa.string()),
        pa.field("scenario_confidence", pa.float64()),
        pa.field("scenario_source", pa.string(), nullable=False),
        pa.field("intent", pa.string()),
        pa.field("sentiment", pa.string()),
        pa.field("sentiment_score", pa.float64()),
        pa.field("emotion", pa.string()),
        pa.field("urgency", pa.float64()),
        pa.field("escalation_risk", pa.bool_()),
        pa.field("urgency_triggers", pa.list_(pa.string())),
        pa.field("needs_review", pa.bool_()),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("read_at", pa.timestamp("us", tz="UTC"), nullable=False),
        # Fields a human set in a correction row (null on model readings): only those are
        # training labels; the row's other fields are copies of the reading it corrected.
        pa.field("corrected_fields", pa.list_(pa.string())),
    ]
)

#: Label spellings of public data sets mapped to the reading vocabulary.
SENTIMENT_ALIASES = {
    "0": "negative",
    "neg": "negative",
    "negative": "negative",
    "1": "positive",
    "pos": "positive",
    "positive": "positive",
    "2": "neutral",
    "neu": "neutral",
    "neutral": "neutral",
}
EMOTION_ALIASES = {
    "angry": "anger",
    "anger": "anger",
    "happy": "joy",
    "joy": "joy",
    "sad": "sadness",
    "sadness": "sadness",
    "fear": "fear",
    "surprise": "surprise",
    "neutral": "neutral",
}


class SubcategoryCentroids:
    """Nearest subcategory centroid (cosine) in the scenario model's feature space.

    Notes
    -----
    A Rocchio classifier (Rocchio 1971; Manning et al. 2008, ch. 14) reusing the TF-IDF
    features already computed for the scenario, so subcategories cost one sparse product.
    """

    def __init__(self, *, scenario_model: TextClassifier) -> None:
        self.scenario_model = scenario_model

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> SubcategoryCentroids:
        """Average the normalised feature vectors of each "SCENARIO.sub" label."""
        x = self.scenario_model.transform(texts)
        y = np.asarray(labels)
        self.classes_ = np.unique(y)
        rows = [sparse.csr_matrix(x[y == c].mean(axis=0)) for c in self.classes_]
        c = sparse.vstack(rows, format="csr")
        norms = np.sqrt(np.asarray(c.multiply(c).sum(axis=1))).ravel()
        self.centroids_ = sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ c
        self.scenario_of_ = np.array([s.split(".", 1)[0] for s in self.classes_])
        return self

    def best(self, x: sparse.csr_matrix, scenarios: np.ndarray) -> np.ndarray:
        """Return the closest subcategory code within each row's scenario (None if none)."""
        sims: np.ndarray = np.asarray((x @ self.centroids_.T).todense())
        allowed = self.scenario_of_[None, :] == scenarios[:, None]
        sims = np.where(allowed, sims, -np.inf)
        idx: np.ndarray = np.argmax(sims, axis=1)
        ok = np.isfinite(sims[np.arange(len(idx)), idx])
        codes = np.array([c.split(".", 1)[1] for c in self.classes_], dtype=object)
        out: np.ndarray = codes[idx]
        out[~ok] = None
        return out


@dataclass
class ReadingBundle:
    """Everything one reading needs, versioned as a unit."""

    taxonomy: Taxonomy
    scenario: TextClassifier | HybridClassifier
    subcategory: SubcategoryCentroids
    sentiment: Any
    emotion: Any
    version: str
    info: dict[str, Any] = field(default_factory=dict)


def content_version(taxonomy: Taxonomy, extra: dict[str, Any] | None = None) -> str:
    """Return a short hash of the taxonomy, lexicon and training summary."""
    blob = json.dumps(
        {"taxonomy": taxonomy.model_dump(), "lexicon": lexicon(), "extra": extra or {}},
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def build_bundle(
    *,
    taxonomy: Taxonomy,
    history_texts: Sequence[str] = (),
    history_labels: Sequence[str] = (),
    version: str | None = None,
    sentiment: Any = None,
    emotion: Any = None,
    encoder: Encoder | None = None,
    selective_encoding: bool = True,
) -> ReadingBundle:
    """Train the scenario model on taxonomy examples plus labelled history; wrap it all.

    With an ``encoder`` the scenario model is a ``HybridClassifier`` (TF-IDF pooled with a
    sentence-embedding probe); subcategories still use the TF-IDF space. With
    ``selective_encoding`` it encodes only the voices its lexical expert is unsure of
    (threshold by inner CV, ``HybridClassifier(selective=True)``).
    """
    ex_texts, ex_codes, ex_subs = taxonomy.examples()
    texts = [*ex_texts, *history_texts]
    labels = [*ex_codes, *history_labels]
    lexical = TextClassifier(class_weight="balanced")
    scenario: TextClassifier | HybridClassifier
    if encoder is None:
        scenario = lexical.fit(texts, labels)
        space = scenario
    else:
        scenario = HybridClassifier(
            encoder=encoder, text_model=lexical, selective=selective_encoding
        ).fit(texts, labels)
        space = scenario.text_
    sub = SubcategoryCentroids(scenario_model=space).fit(ex_texts, ex_subs)
    info = {"n_examples": len(ex_texts), "n_history": len(history_texts)}
    return ReadingBundle(
        taxonomy=taxonomy,
        scenario=scenario,
        subcategory=sub,
        sentiment=sentiment if sentiment is not None else LexiconSentiment().fit(),
        emotion=emotion if emotion is not None else LexiconEmotion().fit(),
        version=version or f"default-{taxonomy.version}-{content_version(taxonomy, info)}",
        info=info,
    )


def _encoder_key(encoder: Any) -> Any:
    # Heads loaded from one bundle file hold separate copies of the same cached encoder;
    # its id (spec and version) says they embed alike.
    return getattr(encoder, "encoder_id", None) or id(encoder)


def shared_embeddings(
    bundle: ReadingBundle,
    texts: list[str],
    *,
    scenario_rows: np.ndarray | None = None,
    head_rows: np.ndarray | None = None,
) -> dict[Any, np.ndarray]:
    """Embed ``texts`` once per distinct encoder that any head of ``bundle`` reads with.

    The scenario, sentiment and emotion heads share the vectors, so a voice is encoded
    once per reading however many heads use the encoder. ``scenario_rows`` is the mask of
    rows the scenario model pools (``HybridClassifier.embedding_rows``), ``head_rows``
    those the sentiment and emotion models read (the Chinese texts); None: all. Rows no
    head needs are not encoded and stay zero.
    """
    needs: dict[Any, tuple[Any, np.ndarray]] = {}

    def need(enc: Any, rows: np.ndarray) -> None:
        key = _encoder_key(enc)
        prev = needs.get(key)
        # The first encoder of an id encodes for all (they embed alike, per the id).
        needs[key] = (enc, rows) if prev is None else (prev[0], prev[1] | rows)

    everything = np.ones(len(texts), bool)
    if isinstance(bundle.scenario, HybridClassifier):
        need(bundle.scenario.encoder, everything if scenario_rows is None else scenario_rows)
    for head in (bundle.sentiment, bundle.emotion):
        if getattr(head, "uses_encoder", False):
            need(head.encoder, everything if head_rows is None else head_rows)
    out: dict[Any, np.ndarray] = {}
    for key, (enc, rows) in needs.items():
        if rows.all():
            out[key] = np.asarray(enc.encode(texts), dtype=np.float32)
            continue
        idx = np.flatnonzero(rows)
        part = np.asarray(enc.encode([texts[i] for i in idx]), dtype=np.float32)
        full = np.zeros((len(texts), part.shape[1] if part.ndim == 2 else 0), np.float32)
        if len(idx):
            full[idx] = part
        out[key] = full
    return out


def _head_emb(head: Any, embs: dict[Any, np.ndarray]) -> np.ndarray | None:
    if not getattr(head, "uses_encoder", False):
        return None
    return embs.get(_encoder_key(head.encoder))


def _scenario_scores(
    model: TextClassifier | HybridClassifier,
    texts: list[str],
    embs: dict[Any, np.ndarray] | None = None,
    *,
    x: sparse.csr_matrix | None = None,
    p_text: np.ndarray | None = None,
) -> tuple[sparse.csr_matrix, np.ndarray, str]:
    """Return TF-IDF features (for subcategories), class probabilities and the model name."""
    # Features are computed once: subcategories reuse them.
    if isinstance(model, HybridClassifier):
        x = model.text_.transform(texts) if x is None else x
        emb = (embs or {}).get(_encoder_key(model.encoder))
        proba = model.proba_from_features(texts, x, emb=emb, p_text=p_text)
        return x, proba, "model:hybrid_encoder"
    x = model.transform(texts) if x is None else x
    return x, model.proba_from_features(x), "model:text_svm"


def _regex_first(texts: pa.Array, patterns: Sequence[tuple[str, str]]) -> np.ndarray:
    """Return, per row, the name of the first pattern that matches (None if none)."""
    out = np.full(len(texts), None, dtype=object)
    for name, pattern in patterns:
        m = pc.match_substring_regex(texts, pattern).to_numpy(zero_copy_only=False)
        out = np.where((out == None) & m, name, out)  # noqa: E711 - elementwise test
    return out


def _sentiment(
    bundle: ReadingBundle,
    texts: pa.Array,
    emotion: np.ndarray,
    chinese: np.ndarray | None,
    emb: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    model = bundle.sentiment
    if isinstance(model, LexiconSentiment):
        return model.predict(texts), model.score(texts)
    if isinstance(model, CorpusSentiment):
        return model.read(texts, emotion=emotion, chinese=chinese, emb=emb)
    proba = model.predict_proba(texts.to_pylist())
    names = np.array([SENTIMENT_ALIASES.get(str(c).lower(), str(c)) for c in model.classes_])
    labels = names[np.argmax(proba, axis=1)]
    score = proba[:, names == "positive"].sum(axis=1) - proba[:, names == "negative"].sum(axis=1)
    return labels, score


def _head_rows(
    bundle: ReadingBundle, texts: pa.Array, chinese: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Return the rows the corpus heads need embedded, and the emotion model's lexical proba.

    A pooled sentiment head reads every Chinese text; a pooled emotion head only those its
    lexical model is unsure of (``CorpusEmotion.embedding_rows``).
    """
    if chinese is None:
        return None, None
    rows = np.zeros(len(texts), bool)
    lexical = None
    if getattr(bundle.sentiment, "uses_encoder", False):
        rows |= chinese
    emotion = bundle.emotion
    if isinstance(emotion, CorpusEmotion) and emotion.uses_encoder:
        emo_rows, lexical = emotion.embedding_rows(texts, chinese=chinese)
        rows |= emo_rows
    elif getattr(emotion, "uses_encoder", False):
        rows |= chinese
    return rows, lexical


def _emotion(
    bundle: ReadingBundle,
    texts: pa.Array,
    chinese: np.ndarray | None,
    emb: np.ndarray | None = None,
    lexical: np.ndarray | None = None,
) -> np.ndarray:
    model = bundle.emotion
    if isinstance(model, LexiconEmotion):
        return model.predict(texts)
    if isinstance(model, CorpusEmotion):
        return model.read(texts, chinese=chinese, emb=emb, lexical=lexical)
    pred = model.predict(texts.to_pylist())
    return np.array([EMOTION_ALIASES.get(str(p).lower(), str(p)) for p in pred], dtype=object)


#: Rows featurised at once; bounds the memory of n-gram intermediates.
CHUNK_ROWS = 8192


def read_table(
    voices: pa.Table | pa.RecordBatch,
    *,
    bundle: ReadingBundle,
    prior_contacts: np.ndarray | None = None,
    read_at: datetime | None = None,
) -> pa.Table:
    """Read every voice of ``voices`` (columns ``id`` and ``text``); return ``readings`` rows."""
    for col in ("id", "text"):
        if col not in voices.schema.names:
            raise ValueError(f"voices batch lacks the column {col!r}")
    when = read_at or datetime.now(UTC)
    if voices.num_rows <= CHUNK_ROWS:
        return _read_chunk(voices, bundle=bundle, prior_contacts=prior_contacts, read_at=when)
    parts = []
    for start in range(0, voices.num_rows, CHUNK_ROWS):
        prior = None if prior_contacts is None else prior_contacts[start : start + CHUNK_ROWS]
        part = voices.slice(start, CHUNK_ROWS)
        parts.append(_read_chunk(part, bundle=bundle, prior_contacts=prior, read_at=when))
    return pa.concat_tables(parts)


def _read_chunk(
    voices: pa.Table | pa.RecordBatch,
    *,
    bundle: ReadingBundle,
    prior_contacts: np.ndarray | None,
    read_at: datetime,
) -> pa.Table:
    texts = voices.column("text")
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    texts = pc.fill_null(texts.cast(pa.string()), "")
    n = len(texts)
    py_texts = texts.to_pylist()
    tax = bundle.taxonomy

    # One encoding per voice, shared by every head that pools with the encoder; the
    # scenario model encodes only the voices its lexical expert is unsure of.
    x: sparse.csr_matrix | None = None
    p_text: np.ndarray | None = None
    rows: np.ndarray | None = None
    if isinstance(bundle.scenario, HybridClassifier):
        x = bundle.scenario.text_.transform(py_texts)
        p_text = bundle.scenario.text_.proba_from_features(x)
        rows = bundle.scenario.embedding_rows(p_text)
    # Corpus models read Chinese text only (the rest keeps the lexicons), so only Chinese
    # voices need embeddings for them.
    corpus = isinstance(bundle.sentiment, CorpusSentiment) or isinstance(
        bundle.emotion, CorpusEmotion
    )
    chinese = chinese_mask(texts) if corpus else None
    head_rows, emo_lexical = _head_rows(bundle, texts, chinese)
    embs = shared_embeddings(bundle, py_texts, scenario_rows=rows, head_rows=head_rows)
    x, proba, model_name = _scenario_scores(bundle.scenario, py_texts, embs, x=x, p_text=p_text)
    best = np.argmax(proba, axis=1)
    model_code = bundle.scenario.classes_[best].astype(object)
    confidence = proba[np.arange(n), best]

    rule_ids = _regex_first(texts, [(r.id, r.pattern) for r, _ in tax.rules()])
    rule_code = {r.id: code for r, code in tax.rules()}
    has_rule = rule_ids != None  # noqa: E711 - elementwise test
    scenario = np.where(has_rule, [rule_code.get(r, "") for r in rule_ids], model_code)
    sure = confidence >= tax.uncertain_threshold
    source = np.where(
        has_rule,
        np.char.add("rule:", rule_ids.astype(str)),
        np.where(sure, model_name, "uncertain"),
    )
    confidence = np.where(has_rule, 1.0, confidence)
    needs_review = ~has_rule & ~sure
    subcategory = bundle.subcategory.best(x, scenario.astype(str))

    lower = pc.utf8_lower(texts)
    intents = sorted(tax.intents, key=lambda i: -i.priority)
    intent = _regex_first(lower, [(i.code, i.pattern) for i in intents])
    intent = np.where(intent == None, tax.default_intent, intent)  # noqa: E711

    # The Chinese mask is shared; sentiment's neutral rule needs the reading's emotion, so
    # emotion is read first.
    emotion = _emotion(bundle, texts, chinese, _head_emb(bundle.emotion, embs), emo_lexical)
    sentiment, sentiment_score = _sentiment(
        bundle, texts, emotion, chinese, _head_emb(bundle.sentiment, embs)
    )
    urg = assess(texts, prior_contacts=prior_contacts)

    return pa.table(
        {
            "voice_id": voices.column("id").cast(pa.string()),
            "scenario": pa.array(scenario.tolist(), type=pa.string()),
            "subcategory": pa.array(subcategory.tolist(), type=pa.string()),
            "scenario_confidence": pa.array(confidence, type=pa.float64()),
            "scenario_source": pa.array(source.tolist(), type=pa.string()),
            "intent": pa.array(intent.tolist(), type=pa.string()),
            "sentiment": pa.array(np.asarray(sentiment).tolist(), type=pa.string()),
            "sentiment_score": pa.array(np.clip(sentiment_score, -1, 1), type=pa.float64()),
            "emotion": pa.array(np.asarray(emotion).tolist(), type=pa.string()),
            "urgency": pa.array(urg.urgency, type=pa.float64()),
            "escalation_risk": pa.array(urg.escalation_risk, type=pa.bool_()),
            "urgency_triggers": pa.array(urg.triggers, type=pa.list_(pa.string())),
            "needs_review": pa.array(needs_review, type=pa.bool_()),
            "model_version": pa.array([bundle.version] * n, type=pa.string()),
            "read_at": pa.array([read_at] * n, type=pa.timestamp("us", tz="UTC")),
            "corrected_fields": pa.nulls(n, type=pa.list_(pa.string())),
        },
        schema=READING_SCHEMA,
    )
