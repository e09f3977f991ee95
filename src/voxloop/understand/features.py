"""Vectorised hashed n-gram TF-IDF: character n-grams and rjieba word n-grams.

scikit-learn's text vectorisers build n-grams in Python, one document at a time, which
caps a reading at a few thousand texts per second. Here a whole batch is turned into one
array of Unicode code points and every n-gram of every document is hashed at once with
numpy (FNV-1a over uint64, wrapping arithmetic), so the only per-document Python work left
is rjieba's native segmentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import rjieba
from scipy import sparse

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_WORD_BASE = np.uint64(0x9E3779B97F4A7C15)
_SEP = 1  # code point that separates words inside a document
_DOC = 2  # code point that ends a document
_SPACES = np.array([9, 10, 13, 32, 0xA0, 0x3000], dtype=np.uint64)


def _mix(h: np.ndarray, n_bits: int) -> np.ndarray:
    h = h ^ (h >> np.uint64(29))
    h = h * _FNV_PRIME
    h = h ^ (h >> np.uint64(32))
    out: np.ndarray = (h & np.uint64((1 << n_bits) - 1)).astype(np.int64)
    return out


def _lowered(texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> list[str]:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if not isinstance(texts, pa.Array):
        texts = pa.array(list(texts), type=pa.string())
    out: list[str] = pc.utf8_lower(pc.fill_null(texts.cast(pa.string()), "")).to_pylist()
    return out


def _codes(s: str) -> np.ndarray:
    return np.frombuffer(s.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)


def char_ngram_hashes(
    texts: list[str], ngram: tuple[int, int], n_bits: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return (document index, bucket) of every character n-gram of ``texts``.

    Each document is padded with one space on both sides, so n-grams at its start and end
    differ from the same characters inside a word (as scikit-learn's ``char_wb`` does).
    """
    lengths = np.fromiter((len(t) + 2 for t in texts), dtype=np.int64, count=len(texts))
    codes = _codes("".join(f" {t} " for t in texts))
    doc = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
    total = len(codes)
    docs: list[np.ndarray] = []
    buckets: list[np.ndarray] = []
    with np.errstate(over="ignore"):
        for n in range(ngram[0], ngram[1] + 1):
            m = total - n + 1
            if m <= 0:
                continue
            ok = doc[:m] == doc[n - 1 : n - 1 + m]
            # A lone padding space is no feature.
            if n == 1:
                ok &= codes[:m] != 32
            h = np.full(m, _FNV_OFFSET ^ np.uint64(n), dtype=np.uint64)
            for k in range(n):
                h = (h ^ codes[k : k + m]) * _FNV_PRIME
            docs.append(doc[:m][ok])
            buckets.append(_mix(h[ok], n_bits))
    if not docs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(docs), np.concatenate(buckets)


def word_ngram_hashes(
    texts: list[str], ngram: tuple[int, int], n_bits: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return (document index, bucket) of every rjieba word n-gram of ``texts``."""
    sep, end = chr(_SEP), chr(_DOC)
    joined = "".join(sep.join(rjieba.cut(t)) + end for t in texts)
    codes = _codes(joined)
    if len(codes) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    is_end = codes == _DOC
    is_break = is_end | (codes == _SEP)
    doc_of_pos = np.concatenate([[0], np.cumsum(is_end)[:-1]])
    # Token j spans from its start to the next break; every break closes one token.
    starts = np.concatenate([[0], np.flatnonzero(is_break)[:-1] + 1])
    tok_of_pos = np.concatenate([[0], np.cumsum(is_break)[:-1]])
    pos_in_tok = np.arange(len(codes)) - starts[tok_of_pos]
    with np.errstate(over="ignore"):
        weights = np.power(_WORD_BASE, pos_in_tok.astype(np.uint64))
        contrib = np.where(is_break, np.uint64(0), (codes + np.uint64(7)) * weights)
        tok_hash = np.add.reduceat(contrib, starts)
        tok_doc = doc_of_pos[starts]
        # Whitespace tokens from rjieba and empty documents carry no word.
        solid = ~is_break & ~np.isin(codes, _SPACES)
        keep = np.add.reduceat(solid.astype(np.int64), starts) > 0
        tok_hash, tok_doc = tok_hash[keep], tok_doc[keep]
        docs: list[np.ndarray] = []
        buckets: list[np.ndarray] = []
        for n in range(ngram[0], ngram[1] + 1):
            m = len(tok_hash) - n + 1
            if m <= 0:
                continue
            ok = tok_doc[:m] == tok_doc[n - 1 : n - 1 + m]
            h = np.full(m, _FNV_OFFSET ^ np.uint64(100 + n), dtype=np.uint64)
            for k in range(n):
                h = (h ^ tok_hash[k : k + m]) * _FNV_PRIME
            docs.append(tok_doc[:m][ok])
            buckets.append(_mix(h[ok], n_bits))
    if not docs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(docs), np.concatenate(buckets)


class HashedTfidf:
    """TF-IDF over hashed n-grams, compacted to the buckets seen in training.

    Parameters
    ----------
    kind : ``"char"`` (character n-grams) or ``"word"`` (rjieba word n-grams).
    ngram : (min, max) n-gram lengths.
    n_bits : log2 of the number of hash buckets.
    min_df : buckets seen in fewer training documents are dropped.
    sublinear_tf : use 1 + log(tf) instead of raw counts.

    Notes
    -----
    The hashing trick (Weinberger et al. 2009, "Feature Hashing for Large Scale Multitask
    Learning") with smoothed IDF and L2 normalisation as in scikit-learn's
    ``TfidfTransformer``; FNV-1a hashing (Fowler, Noll, Vo).
    """

    def __init__(
        self,
        *,
        kind: str = "char",
        ngram: tuple[int, int] = (1, 4),
        n_bits: int = 22,
        min_df: int = 1,
        sublinear_tf: bool = True,
    ) -> None:
        self.kind = kind
        self.ngram = ngram
        self.n_bits = n_bits
        self.min_df = min_df
        self.sublinear_tf = sublinear_tf

    def _counts(self, texts: list[str]) -> sparse.csr_matrix:
        if self.kind == "char":
            doc, bucket = char_ngram_hashes(texts, self.ngram, self.n_bits)
        elif self.kind == "word":
            doc, bucket = word_ngram_hashes(texts, self.ngram, self.n_bits)
        else:
            raise ValueError(f"kind must be 'char' or 'word', got {self.kind!r}")
        data = np.ones(len(doc), dtype=np.float32)
        m = sparse.csr_matrix((data, (doc, bucket)), shape=(len(texts), 1 << self.n_bits))
        m.sum_duplicates()
        return m

    def fit_transform(self, texts: Sequence[str] | pa.Array) -> sparse.csr_matrix:
        """Learn the seen buckets and their IDF; return the training matrix."""
        lowered = _lowered(texts)
        counts = self._counts(lowered)
        df = np.bincount(counts.indices, minlength=1 << self.n_bits)
        kept = np.flatnonzero(df >= max(self.min_df, 1))
        self.columns_ = kept
        remap = np.full(1 << self.n_bits, -1, dtype=np.int32)
        remap[kept] = np.arange(len(kept), dtype=np.int32)
        self.remap_ = remap
        n = len(lowered)
        self.idf_ = (np.log((1.0 + n) / (1.0 + df[kept])) + 1.0).astype(np.float32)
        return self._weigh(counts)

    def fit(self, texts: Sequence[str] | pa.Array) -> Self:
        """Learn the seen buckets and their IDF."""
        self.fit_transform(texts)
        return self

    def transform(self, texts: Sequence[str] | pa.Array) -> sparse.csr_matrix:
        """Return the L2-normalised TF-IDF matrix of ``texts``."""
        return self._weigh(self._counts(_lowered(texts)))

    def _weigh(self, counts: sparse.csr_matrix) -> sparse.csr_matrix:
        cols = self.remap_[counts.indices]
        keep = cols >= 0
        rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))[keep]
        data = counts.data[keep]
        if self.sublinear_tf:
            data = 1.0 + np.log(data)
        cols = cols[keep]
        data = (data * self.idf_[cols]).astype(np.float32)
        sq = np.bincount(rows, weights=data.astype(np.float64) ** 2, minlength=counts.shape[0])
        norm = np.sqrt(sq).astype(np.float32)
        data = data / np.maximum(norm[rows], 1e-12)
        out = sparse.csr_matrix((data, (rows, cols)), shape=(counts.shape[0], len(self.idf_)))
        return out
