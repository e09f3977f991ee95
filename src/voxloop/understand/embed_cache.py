"""Embeddings cached by content hash in the lake, so that a voice is encoded once.

Layout: ``<lake>/embedding_cache/<encoder id>/part-<stamp>-<uuid>.{keys,vecs}.npy``. Each
part holds the 16-byte BLAKE2b digests of its texts (sorted) and their embeddings as
float16 rows. Parts are immutable and written atomically (``os.replace``), like the lake's
Parquet parts, so readers and writers in other processes never see a half-written part.
Vectors are memory-mapped, so the cache costs 16 bytes of RAM per cached text.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from voxloop.config import Settings

#: Folder of the cache under ``settings.lake_dir``.
CACHE_TABLE = "embedding_cache"
_KEY = np.dtype("S16")


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """Return the 16-byte BLAKE2b digest of every text, as an ``S16`` array."""
    blob = b"".join(hashlib.blake2b(t.encode("utf-8"), digest_size=16).digest() for t in texts)
    return np.frombuffer(blob, dtype=_KEY).copy() if texts else np.zeros(0, dtype=_KEY)


def cache_folder(settings: Settings, encoder_id: str) -> Path:
    """Return the cache folder of one encoder under the lake."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder_id).strip("_") or "encoder"
    digest = hashlib.sha256(encoder_id.encode()).hexdigest()[:8]
    return settings.lake_dir / CACHE_TABLE / f"{safe[:40]}-{digest}"


class _Part:
    def __init__(self, keys_path: Path) -> None:
        self.name = keys_path.name
        self.keys = np.load(keys_path)
        self.vecs = np.load(str(keys_path).replace(".keys.npy", ".vecs.npy"), mmap_mode="r")


class CachedEncoder:
    """Wrap an encoder; embeddings are looked up by text hash and only new texts encoded.

    Parameters
    ----------
    inner : the encoder that computes missing embeddings.
    encoder_id : names the encoder (spec and version); one cache folder per id.
    folder : the cache folder; ``None`` (for example in a model file loaded elsewhere)
        encodes without caching until ``attach_cache`` gives one.

    Notes
    -----
    Returned vectors are float32 copies of float16-rounded embeddings whether they came
    from the cache or were just computed, so training and reading see identical features.
    Duplicate texts inside a batch are encoded once. Content-addressed caching in the
    spirit of Merkle (1987): the key is a cryptographic digest of the text itself.
    """

    def __init__(self, *, inner: Any, encoder_id: str, folder: Path | None = None) -> None:
        self.inner = inner
        self.encoder_id = encoder_id
        self.folder = folder
        self.encoded = 0
        self.hits = 0
        self._parts: dict[str, _Part] = {}

    def _refresh(self) -> list[_Part]:
        if self.folder is None or not self.folder.exists():
            return []
        for path in sorted(self.folder.glob("part-*.keys.npy")):
            if path.name not in self._parts:
                try:
                    self._parts[path.name] = _Part(path)
                except (OSError, ValueError):  # a part being replaced right now
                    continue
        return list(self._parts.values())

    def _write(self, keys: np.ndarray, vecs: np.ndarray) -> None:
        if self.folder is None or not len(keys):
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            order = np.argsort(keys, kind="stable")
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            base = self.folder / f"part-{stamp}-{uuid.uuid4().hex[:8]}"
            for suffix, arr in ((".vecs.npy", vecs[order]), (".keys.npy", keys[order])):
                tmp = base.with_name(base.name + suffix + ".tmp")
                with tmp.open("wb") as fh:
                    np.save(fh, arr)
                os.replace(tmp, base.with_name(base.name + suffix))
        except OSError:
            return  # a read-only lake still reads; it only re-encodes next time

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return one embedding row per text, encoding only texts not in the cache."""
        texts = list(texts)
        keys = text_keys(texts)
        out: np.ndarray | None = None
        found = np.zeros(len(texts), dtype=bool)
        for part in self._refresh():
            if not len(part.keys) or found.all():
                continue
            pos = np.searchsorted(part.keys, keys)
            pos_c = np.minimum(pos, len(part.keys) - 1)
            hit = (~found) & (part.keys[pos_c] == keys)
            if hit.any():
                if out is None:
                    out = np.zeros((len(texts), part.vecs.shape[1]), dtype=np.float32)
                out[hit] = part.vecs[pos_c[hit]]
                found |= hit
        missing = np.flatnonzero(~found)
        self.hits += len(texts) - len(missing)
        if len(missing):
            uniq, first, inverse = np.unique(keys[missing], return_index=True, return_inverse=True)
            new = np.asarray(
                self.inner.encode([texts[i] for i in missing[first]]), dtype=np.float16
            )
            self.encoded += len(uniq)
            if out is None:
                out = np.zeros((len(texts), new.shape[1]), dtype=np.float32)
            out[missing] = new[inverse.reshape(-1)].astype(np.float32)
            self._write(uniq, new)
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    def __getstate__(self) -> dict[str, Any]:
        # The lake path belongs to this machine; a loaded model gets it from its settings.
        return {"inner": self.inner, "encoder_id": self.encoder_id, "folder": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]


def attach_cache(model: Any, settings: Settings) -> None:
    """Point a loaded model's ``CachedEncoder`` (if any) at this lake's cache folder."""
    encoder = getattr(model, "encoder", None)
    if isinstance(encoder, CachedEncoder):
        encoder.folder = cache_folder(settings, encoder.encoder_id)
