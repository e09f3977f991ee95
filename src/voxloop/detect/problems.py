"""Group voices into problems incrementally: near-duplicates and semantic neighbours.

Each voice's masked text becomes a TF-IDF vector of character 2-3-grams (hashed, so the
vocabulary never has to be rebuilt; document frequencies are learnt incrementally).
Within a block (scenario by default), a voice joins the problem whose centroid is most
similar if the cosine similarity reaches ``threshold``, otherwise it opens a new problem
(the leader / single-pass clustering of Hartigan 1975, as used for online event detection
by Allan, Papka & Lavrenko 1998).  Exact and near-duplicate texts (equal 64-bit SimHash of
character 3-grams, Charikar 2002) always join the same problem.  Voices are processed in
(received_at, id) order, so grouping is deterministic; the configuration is hashed into
``config_version`` and recorded with every problem.

References
----------
Hartigan (1975), "Clustering Algorithms", Wiley (leader algorithm).
Allan, Papka & Lavrenko (1998), "On-line new event detection and tracking", SIGIR.
Charikar (2002), "Similarity estimation techniques from rounding algorithms", STOC.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer

FloatArray = npt.NDArray[np.float64]

_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]{2,}")
_PLACEHOLDER = re.compile(r"<[A-Z]{2,12}>")
_EN_STOP = frozenset(
    "the and for that this with have has was were are you your not but all any can had "
    "from they them our out get got been would could did just about what when which there "
    "their will into also more than then very because after before over again".split()
)
_ZH_STOP = frozenset(
    "我们 你们 他们 什么 怎么 这个 那个 一个 没有 不是 就是 还是 已经 可以 现在 然后 "
    "因为 所以 但是 而且 如果 一直 请问 您好 客户 坐席 谢谢 还有 其他 帮您 服务 处理 "
    "问题 这样 为什么 一下 知道 时候 今天 昨天".split()
)


class ProblemGrouper:
    """Leader clustering of voice texts into problems, learnt incrementally.

    Parameters
    ----------
    threshold : cosine similarity to a problem centroid needed to join it.
    n_features : size of the hashed character n-gram space.
    block_by : columns that must be equal for voices to share a problem.
    max_terms : non-zero terms kept per centroid (keeps memory bounded).
    """

    name: ClassVar[str] = "leader_tfidf"
    _params: ClassVar[tuple[str, ...]] = ("threshold", "n_features", "block_by", "max_terms")

    def __init__(
        self,
        threshold: float = 0.3,
        n_features: int = 2**18,
        block_by: tuple[str, ...] | list[str] = ("scenario",),
        max_terms: int = 400,
    ) -> None:
        self.threshold = threshold
        self.n_features = n_features
        self.block_by = block_by
        self.max_terms = max_terms

    def get_params(self) -> dict[str, Any]:
        """Return the constructor parameters."""
        return {p: getattr(self, p) for p in self._params}

    @property
    def config_version(self) -> str:
        """Return a short hash of the configuration, recorded with every problem."""
        raw = json.dumps({"name": self.name, **self.get_params()}, sort_keys=True, default=list)
        return hashlib.sha1(raw.encode()).hexdigest()[:12]

    def _ensure(self) -> None:
        if not hasattr(self, "df_"):
            self.df_ = np.zeros(self.n_features, dtype=np.float64)
            self.n_docs_ = 0
            self.problem_ids_: list[str] = []
            self.blocks_: list[str] = []
            self.centroids_: list[sp.csr_matrix] = []
            self.sizes_: list[int] = []
            self.simhash_: dict[str, int] = {}

    def _vectorizer(self) -> HashingVectorizer:
        return HashingVectorizer(
            analyzer="char",
            ngram_range=(2, 3),
            n_features=self.n_features,
            alternate_sign=False,
            norm=None,
            lowercase=True,
        )

    def _tfidf(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        idf = np.log((1.0 + self.n_docs_) / (1.0 + self.df_)) + 1.0
        x = counts.astype(np.float64)
        x.data = np.log1p(x.data)
        x = sp.csr_matrix(x.multiply(idf[np.newaxis, :]))
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sp.csr_matrix(sp.diags(1.0 / norms) @ x)

    def _truncate(self, row: sp.csr_matrix) -> sp.csr_matrix:
        if row.nnz <= self.max_terms:
            return row
        keep = np.argsort(-row.data)[: self.max_terms]
        return sp.csr_matrix(
            (row.data[keep], (np.zeros(len(keep), dtype=np.int64), row.indices[keep])),
            shape=row.shape,
        )

    def partial_fit_assign(
        self, texts: list[str], blocks: list[str], voice_ids: list[str]
    ) -> tuple[list[str], FloatArray]:
        """Assign voices (already in processing order) to problems; learn from them.

        Returns each voice's problem id and its similarity to the problem's centroid.
        """
        self._ensure()
        if not (len(texts) == len(blocks) == len(voice_ids)):
            raise ValueError("texts, blocks and voice_ids must have the same length")
        counts = sp.csr_matrix(self._vectorizer().transform(texts))
        self.df_ += np.bincount(counts.indices, minlength=self.n_features)
        self.n_docs_ += len(texts)
        x = self._tfidf(counts)
        out_ids: list[str] = []
        sims = np.zeros(len(texts))
        block_index: dict[str, list[int]] = {}
        for k, b in enumerate(self.blocks_):
            block_index.setdefault(b, []).append(k)
        for i in range(len(texts)):
            row = x.getrow(i)
            dup = f"{blocks[i]}|{simhash(texts[i])}"
            target = self.simhash_.get(dup)
            sim = 1.0
            if target is None:
                cands = block_index.get(blocks[i], [])
                if cands:
                    mat = sp.vstack([self.centroids_[k] for k in cands])
                    scores = np.asarray((mat @ row.T).todense()).ravel()
                    norms = np.sqrt(np.asarray(mat.multiply(mat).sum(axis=1)).ravel())
                    scores = scores / np.maximum(norms, 1e-12)
                    best = int(np.argmax(scores))
                    if scores[best] >= self.threshold:
                        target, sim = cands[best], float(scores[best])
            if target is None:
                target = len(self.problem_ids_)
                raw = f"{self.config_version}|{voice_ids[i]}"
                self.problem_ids_.append("p-" + hashlib.sha1(raw.encode()).hexdigest()[:12])
                self.blocks_.append(blocks[i])
                self.centroids_.append(self._truncate(row))
                self.sizes_.append(1)
                block_index.setdefault(blocks[i], []).append(target)
            else:
                n = self.sizes_[target]
                merged = sp.csr_matrix((self.centroids_[target] * n + row) / (n + 1))
                self.centroids_[target] = self._truncate(merged)
                self.sizes_[target] = n + 1
            self.simhash_.setdefault(dup, target)
            out_ids.append(self.problem_ids_[target])
            sims[i] = sim
        return out_ids, sims

    def save(self, path: Path) -> None:
        """Write parameters and state to ``path`` (``.npz``)."""
        self._ensure()
        meta = {
            "grouper": self.name,
            "params": {**self.get_params(), "block_by": list(self.block_by)},
            "n_docs": self.n_docs_,
            "problem_ids": self.problem_ids_,
            "blocks": self.blocks_,
            "sizes": self.sizes_,
            "simhash": self.simhash_,
        }
        cents = sp.vstack(self.centroids_) if self.centroids_ else sp.csr_matrix((0, 1))
        cents = sp.csr_matrix(cents)
        with path.open("wb") as fh:
            np.savez(
                fh,
                meta=np.array(json.dumps(meta, ensure_ascii=False)),
                df=self.df_,
                c_data=cents.data,
                c_indices=cents.indices,
                c_indptr=cents.indptr,
            )

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a grouper written by ``save``."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta["grouper"] != cls.name:
                raise ValueError(f"{path}: holds {meta['grouper']!r}, not {cls.name!r}")
            params = meta["params"]
            params["block_by"] = tuple(params["block_by"])
            obj = cls(**params)
            obj._ensure()
            obj.df_ = data["df"].astype(np.float64)
            obj.n_docs_ = int(meta["n_docs"])
            obj.problem_ids_ = list(meta["problem_ids"])
            obj.blocks_ = list(meta["blocks"])
            obj.sizes_ = [int(s) for s in meta["sizes"]]
            obj.simhash_ = {k: int(v) for k, v in meta["simhash"].items()}
            n = len(obj.problem_ids_)
            if n:
                cents = sp.csr_matrix(
                    (data["c_data"], data["c_indices"], data["c_indptr"]),
                    shape=(n, obj.n_features),
                )
                obj.centroids_ = [cents.getrow(i) for i in range(n)]
        return obj


#: Problem groupers, by name.
GROUPERS: dict[str, type[ProblemGrouper]] = {ProblemGrouper.name: ProblemGrouper}


def simhash(text: str, bits: int = 64) -> int:
    """Return the 64-bit SimHash of ``text``'s character 3-grams (Charikar 2002)."""
    norm = re.sub(r"\s+", "", text.lower())
    grams = [norm[i : i + 3] for i in range(max(len(norm) - 2, 1))]
    if not grams:
        return 0
    hashes = np.array(
        [int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "big") for g in grams],
        dtype=np.uint64,
    )
    bitsmat = (hashes[:, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)
    votes = bitsmat.astype(np.int64).sum(axis=0) * 2 - len(grams)
    return int(sum(1 << i for i in range(bits) if votes[i] > 0))


def block_keys(table: pa.Table, block_by: tuple[str, ...] | list[str]) -> list[str]:
    """Return each row's block key (values of ``block_by`` joined by ``|``)."""
    cols = [
        table[c].to_pylist() if c in table.column_names else [None] * table.num_rows
        for c in block_by
    ]
    return ["|".join("" if v is None else str(v) for v in vals) for vals in zip(*cols, strict=True)]


def keywords(texts: list[str], *, top: int = 5) -> list[str]:
    """Return the most frequent content words of ``texts`` (rjieba for Chinese)."""
    import rjieba

    counts: Counter[str] = Counter()
    for text in texts:
        clean = _PLACEHOLDER.sub(" ", text)
        if re.search(r"[\u4e00-\u9fff]", clean):
            words = [
                w
                for w in rjieba.cut(clean)
                if len(w) >= 2 and re.search(r"[\u4e00-\u9fff0-9]", w) and w not in _ZH_STOP
            ]
        else:
            words = [w.lower() for w in _WORD.findall(clean) if w.lower() not in _EN_STOP]
        # Count a word once per voice so one long transcript does not dominate.
        counts.update(set(words))
    return [w for w, _ in counts.most_common(top)]


def title_for(scenario: str | None, words: list[str]) -> str:
    """Return a readable problem title: scenario code and the leading keywords."""
    head = " ".join(words[:3]) if words else "—"
    return f"{scenario} · {head}" if scenario else head
