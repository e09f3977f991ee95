"""Text classifiers with one interface (fit / predict / predict_proba / save / load) and a registry.

The default classifier needs no downloaded model: TF-IDF over character n-grams plus
rjieba words (both native-speed tokenisation), a linear SVM, and temperature-scaled
softmax probabilities.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, Self

import numpy as np
import pyarrow as pa
from scipy import sparse
from scipy.optimize import minimize_scalar
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from voxloop.understand.features import HashedTfidf

_FORMAT = 1
#: Held-out rows after which temperature calibration stops fitting further folds.
CALIBRATION_ROWS = 2000
#: Fewest target-domain rows for calibrating on them alone (else all rows calibrate).
MIN_TARGET_CALIBRATION = 200


class TextModel(Protocol):
    """What every registered understanding model offers."""

    classes_: np.ndarray

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Self:
        """Learn from labelled texts."""
        ...

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Return one label per text."""
        ...

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Return class probabilities, columns in ``classes_`` order."""
        ...

    def save(self, path: Path) -> Path:
        """Write the fitted model to ``path``."""
        ...


class PersistMixin:
    """Pickle-based save/load with a format marker and a class check."""

    def save(self, path: Path) -> Path:
        """Write the fitted model to ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            pickle.dump({"format": _FORMAT, "class": type(self).__name__, "model": self}, fh)
        return path

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a model written by ``save`` (only trusted local files: this unpickles)."""
        with path.open("rb") as fh:
            payload = pickle.load(fh)  # models are written by voxloop itself
        model = payload.get("model") if isinstance(payload, dict) else None
        if not isinstance(model, cls):
            raise TypeError(f"{path} does not hold a {cls.__name__}")
        return model

    def get_params(self) -> dict[str, Any]:
        """Return the constructor parameters."""
        import inspect

        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}


def softmax(scores: np.ndarray) -> np.ndarray:
    """Return the row-wise softmax of ``scores``."""
    z = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def _fit_temperature(scores: np.ndarray, y_idx: np.ndarray) -> float:
    """Fit one softmax scale that minimises held-out log-loss (Guo et al. 2017)."""

    def nll(log_t: float) -> float:
        p = softmax(scores * np.exp(log_t))
        return float(-np.mean(np.log(p[np.arange(len(y_idx)), y_idx] + 1e-12)))

    res = minimize_scalar(nll, bounds=(-3.0, 5.0), method="bounded")
    return float(np.exp(res.x))


def _metric(y_idx: np.ndarray, pred: np.ndarray, k: int, metric: str) -> float:
    if metric == "accuracy":
        return float(np.mean(pred == y_idx))
    tp = np.bincount(y_idx[pred == y_idx], minlength=k).astype(np.float64)
    support = np.bincount(y_idx, minlength=k)
    predicted = np.bincount(pred, minlength=k)
    f1 = 2 * tp / np.maximum(support + predicted, 1)
    return float(np.mean(f1[support > 0]))


def fit_class_bias(
    scores: np.ndarray, y_idx: np.ndarray, *, metric: str = "macro_f1", rounds: int = 3
) -> np.ndarray:
    """Fit per-class score offsets that maximise ``metric`` on held-out scores.

    Parameters
    ----------
    scores : out-of-fold decision scores, one column per class.
    y_idx : true class index of each row.
    metric : ``"macro_f1"`` or ``"accuracy"``.
    rounds : coordinate-ascent passes; each pass halves the step grid.

    Notes
    -----
    Coordinate ascent over one additive offset per class, the plug-in thresholding approach
    to optimising F-measures (Lipton, Elkan & Naryanaswamy 2014, "Optimal Thresholding of
    Classifiers to Maximize F1 Measure"); offsets are learnt on cross-validated scores of the
    training data only.
    """
    if metric not in ("macro_f1", "accuracy"):
        raise ValueError(f"metric must be 'macro_f1' or 'accuracy', got {metric!r}")
    k = scores.shape[1]
    bias = np.zeros(k)
    scale = float(np.std(scores)) or 1.0
    best = _metric(y_idx, np.argmax(scores, axis=1), k, metric)
    steps = np.linspace(-1.0, 1.0, 21) * scale
    for r in range(rounds):
        for j in range(k):
            for step in steps * 0.5**r:
                trial = bias.copy()
                trial[j] += step
                value = _metric(y_idx, np.argmax(scores + trial, axis=1), k, metric)
                # Strict improvement only, so ties keep the smaller change.
                if value > best + 1e-9:
                    best, bias = value, trial
    return bias


class TextClassifier(PersistMixin):
    """Linear SVM over TF-IDF character n-grams and rjieba word n-grams.

    Parameters
    ----------
    char_ngram : (min, max) character n-gram lengths; ``None`` disables them.
    word_ngram : (min, max) word n-gram lengths; ``None`` disables word features.
    C : inverse regularisation strength of the SVM.
    min_df : minimum document frequency of a feature.
    n_bits : log2 of the hash buckets of each feature family.
    class_weight : passed to the SVM (``"balanced"`` helps macro-F1 on skewed labels).
    bias_metric : ``"macro_f1"`` or ``"accuracy"`` to learn per-class score offsets that
        maximise that metric on cross-validated training scores (``fit_class_bias``);
        ``None`` keeps the plain arg-max.
    calibration_folds : folds used to fit the softmax temperature (and the class offsets);
        0 keeps scale 1.
    random_state : seed of the calibration folds.
    target_domain : with ``fit(..., domains=...)``, the domain the model will read; rows of
        other domains (another channel, another period, another product) still train it,
        through feature augmentation (see Notes).

    Notes
    -----
    Features are hashed TF-IDF n-grams computed for a whole batch at once
    (``voxloop.understand.features``). Character n-gram TF-IDF with a linear SVM is the
    strong classical baseline for short text classification (Joachims 1998; Wang & Manning
    2012, "Baselines and Bigrams");
    probabilities are calibrated by temperature scaling of the decision scores
    (Guo et al. 2017, "On Calibration of Modern Neural Networks").

    Domain adaptation follows Daumé III (2007), "Frustratingly Easy Domain Adaptation":
    every feature gets a shared copy, a copy seen only on target-domain rows and one seen
    only on the other rows; the SVM learns what transfers and what does not. Reading
    target-domain text uses the shared plus the target copy, so after fitting the two
    weight blocks are summed and the model is as small and fast as an unadapted one.
    """

    def __init__(
        self,
        *,
        char_ngram: tuple[int, int] | None = (1, 4),
        word_ngram: tuple[int, int] | None = (1, 2),
        C: float = 1.0,
        min_df: int = 1,
        n_bits: int = 22,
        class_weight: str | None = None,
        bias_metric: str | None = None,
        calibration_folds: int = 3,
        random_state: int = 0,
        target_domain: str | None = None,
    ) -> None:
        self.char_ngram = char_ngram
        self.word_ngram = word_ngram
        self.C = C
        self.min_df = min_df
        self.n_bits = n_bits
        self.class_weight = class_weight
        self.bias_metric = bias_metric
        self.calibration_folds = calibration_folds
        self.random_state = random_state
        self.target_domain = target_domain

    def _make_vectorisers(self) -> list[HashedTfidf]:
        vecs = []
        for kind, ngram in (("char", self.char_ngram), ("word", self.word_ngram)):
            if ngram is not None:
                vecs.append(
                    HashedTfidf(kind=kind, ngram=ngram, n_bits=self.n_bits, min_df=self.min_df)
                )
        if not vecs:
            raise ValueError("char_ngram and word_ngram cannot both be None")
        return vecs

    def transform(self, texts: Sequence[str] | pa.Array) -> sparse.csr_matrix:
        """Return the feature matrix of ``texts``."""
        return sparse.hstack([v.transform(texts) for v in self.vectorisers_], format="csr")

    def _svm(self) -> LinearSVC:
        return LinearSVC(C=self.C, class_weight=self.class_weight)

    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        domains: Sequence[str] | None = None,
    ) -> Self:
        """Learn vocabularies, the SVM and the probability temperature.

        ``domains`` (one per text) turns on domain adaptation towards ``target_domain``;
        the temperature and class offsets are then fitted on target-domain rows only, when
        at least ``MIN_TARGET_CALIBRATION`` of them were scored.
        """
        texts = _check_texts(texts)
        y = np.asarray([str(v) for v in labels])
        if len(y) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(y)} labels")
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError("need at least two distinct labels to fit a classifier")
        target = self._target_rows(domains, len(y))
        self.vectorisers_ = self._make_vectorisers()
        x = sparse.hstack([v.fit_transform(texts) for v in self.vectorisers_], format="csr")
        xa = x if target is None else _augment(x, target)
        self.classes_ = classes
        y_idx = np.searchsorted(classes, y)
        self.temperature_ = 1.0
        self.class_bias_ = np.zeros(len(classes))
        counts = np.bincount(y_idx)
        folds = min(self.calibration_folds, int(counts.min()))
        if folds >= 2:
            held = np.zeros((len(y), len(classes)), dtype=np.float64)
            scored = np.zeros(len(y), dtype=bool)
            skf = StratifiedKFold(folds, shuffle=True, random_state=self.random_state)
            for tr, te in skf.split(x, y_idx):
                m = _collapse(self._svm().fit(xa[tr], y_idx[tr]), x.shape[1], target)
                held[np.ix_(te, m.classes_)] = _scores(m, x[te])
                missing = np.setdiff1d(np.arange(len(classes)), m.classes_)
                held[np.ix_(te, missing)] = -10.0
                scored[te] = True
                # One fold already holds thousands of scores, plenty for a single scale;
                # class offsets need every row (rare classes), so they use all folds.
                if self.bias_metric is None and scored.sum() >= CALIBRATION_ROWS:
                    break
            # Target rows only when there are enough of them: a scale or six class offsets
            # fitted to a few dozen corrections would move every prediction by noise.
            if target is not None and int((scored & target).sum()) >= MIN_TARGET_CALIBRATION:
                scored &= target
            if self.bias_metric is not None:
                self.class_bias_ = fit_class_bias(
                    held[scored], y_idx[scored], metric=self.bias_metric
                )
            self.temperature_ = _fit_temperature(held[scored] + self.class_bias_, y_idx[scored])
        self.svm_ = _collapse(self._svm().fit(xa, y_idx), x.shape[1], target)
        return self

    def _target_rows(self, domains: Sequence[str] | None, n: int) -> np.ndarray | None:
        if domains is None:
            return None
        if self.target_domain is None:
            raise ValueError("fit(domains=...) needs target_domain set on the classifier")
        target = np.asarray([str(d) == self.target_domain for d in domains], dtype=bool)
        if len(target) != n:
            raise ValueError(f"{n} texts but {len(target)} domains")
        if not target.any():
            raise ValueError(f"no training row belongs to target domain {self.target_domain!r}")
        return target

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """Return SVM scores plus the learnt class offsets, columns in ``classes_`` order."""
        return self._decision(self.transform(_check_texts(texts)))

    def _decision(self, x: sparse.csr_matrix) -> np.ndarray:
        scores = _scores(self.svm_, x)
        # Models pickled before class offsets existed load without the attribute.
        bias = getattr(self, "class_bias_", None)
        return scores if bias is None else scores + bias

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Return temperature-scaled softmax probabilities."""
        return self.proba_from_features(self.transform(_check_texts(texts)))

    def proba_from_features(self, x: sparse.csr_matrix) -> np.ndarray:
        """Return probabilities of rows already featurised by ``transform``."""
        return softmax(self._decision(x) * self.temperature_)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Return the most likely label of each text."""
        out: np.ndarray = self.classes_[np.argmax(self.decision_function(texts), axis=1)]
        return out


def _augment(x: sparse.csr_matrix, target: np.ndarray) -> sparse.csr_matrix:
    """Return ``[x | x on target rows | x on other rows]`` (Daumé III 2007)."""
    on = sparse.diags(target.astype(np.float32))
    off = sparse.diags((~target).astype(np.float32))
    out: sparse.csr_matrix = sparse.hstack([x, on @ x, off @ x], format="csr")
    return out


def _collapse(svm: LinearSVC, n_features: int, target: np.ndarray | None) -> LinearSVC:
    """Fold the shared and target weight blocks of an augmented SVM into one block."""
    if target is not None:
        coef = svm.coef_
        svm.coef_ = np.ascontiguousarray(
            coef[:, :n_features] + coef[:, n_features : 2 * n_features]
        )
        svm.n_features_in_ = n_features
    return svm


def _scores(svm: LinearSVC, x: sparse.csr_matrix) -> np.ndarray:
    s = np.asarray(svm.decision_function(x), dtype=np.float64)
    if s.ndim == 1:  # binary: sklearn returns one column for the positive class
        s = np.column_stack([-s / 2, s / 2])
    return s


def _check_texts(texts: Sequence[str]) -> list[str]:
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"text at row {i} is {type(t).__name__}, expected str")
    return out


#: Every model class of the understand domain, by registry name.
REGISTRY: dict[str, type[Any]] = {"text_svm": TextClassifier}


def register_model(name: str) -> Any:
    """Add a model class to ``REGISTRY`` under ``name`` (class decorator)."""

    def deco(cls: type[Any]) -> type[Any]:
        REGISTRY[name] = cls
        return cls

    return deco
