"""Group voices into problems incrementally: near-duplicates and semantic neighbours.

Each voice's masked text becomes a TF-IDF vector of character 2-3-grams (hashed, so the
vocabulary never has to be rebuilt; document frequencies are learnt incrementally).
Within a block (scenario by default):

1. a near-duplicate of an already grouped voice (same 64-bit SimHash of its hashed
   n-grams, Charikar 2002) goes where that voice went;
2. a voice whose mean similarity to a problem's members (its dot product with their mean
   vector) reaches ``threshold`` joins the best such problem;
3. the remaining voices are clustered by average linkage (stopping at mean similarity
   ``threshold``); each cluster joins an existing problem when the mean similarity
   between the two reaches ``threshold``, else it becomes a new problem.

Voices are processed in (received_at, id) order and problems are named after their first
voice and the configuration hash (``config_version``, recorded with every problem), so
grouping is deterministic.

References
----------
Charikar (2002), "Similarity estimation techniques from rounding algorithms", STOC.
Sokal & Michener (1958), "A statistical method for evaluating systematic relationships"
(UPGMA, average linkage), Univ. Kansas Sci. Bull. 38.
Allan, Papka & Lavrenko (1998), "On-line new event detection and tracking", SIGIR.
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
    [
        "the",
        "and",
        "for",
        "that",
        "this",
        "with",
        "have",
        "has",
        "was",
        "were",
        "are",
        "you",
        "your",
        "not",
        "but",
        "all",
        "any",
        "can",
        "had",
        "from",
        "they",
        "them",
        "our",
        "out",
        "get",
        "got",
        "been",
        "would",
        "could",
        "did",
        "just",
        "about",
        "what",
        "when",
        "which",
        "there",
        "their",
        "will",
        "into",
        "also",
        "more",
        "than",
        "then",
        "very",
        "because",
        "after",
        "before",
        "over",
        "again",
    ]
)
_ZH_STOP = frozenset(
    [
        "我们",
        "你们",
        "他们",
        "什么",
        "怎么",
        "这个",
        "那个",
        "一个",
        "没有",
        "不是",
        "就是",
        "还是",
        "已经",
        "可以",
        "现在",
        "然后",
        "因为",
        "所以",
        "但是",
        "而且",
        "如果",
        "一直",
        "请问",
        "您好",
        "客户",
        "坐席",
        "谢谢",
        "还有",
        "其他",
        "帮您",
        "服务",
        "处理",
        "问题",
        "这样",
        "为什么",
        "一下",
        "知道",
        "时候",
        "今天",
        "昨天",
    ]
)


class ProblemGrouper:
    """Incremental average-linkage grouping of voice texts into problems.

    Parameters
    ----------
    threshold : cosine similarity to a problem centroid needed to join it.
    n_features : size of the hashed character n-gram space.
    block_by : columns that must be equal for voices to share a problem.
    max_terms : non-zero terms kept per centroid (keeps memory bounded).
    context_weight : weight of the place/time tokens passed as ``contexts``.
    """

    name: ClassVar[str] = "leader_tfidf"
    _params: ClassVar[tuple[str, ...]] = (
        "threshold",
        "n_features",
        "block_by",
        "max_terms",
        "context_weight",
    )

    def __init__(
        self,
        threshold: float = 0.15,
        n_features: int = 2**18,
        block_by: tuple[str, ...] | list[str] = ("scenario",),
        max_terms: int = 400,
        context_weight: float = 0.5,
    ) -> None:
        self.threshold = threshold
        self.n_features = n_features
        self.block_by = block_by
        self.max_terms = max_terms
        self.context_weight = context_weight

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

    def _with_context(self, x: sp.csr_matrix, contexts: list[str]) -> sp.csr_matrix:
        """Append place/time tokens (weight ``context_weight``) and renormalise.

        Voices about one incident share where and when they happened even when their
        wording (or language) differs, so context tokens pull them together.
        """
        if len(contexts) != x.shape[0]:
            raise ValueError("contexts must have one entry per text")
        vec = HashingVectorizer(
            analyzer=str.split,
            n_features=self.n_features,
            alternate_sign=False,
            norm="l2",
        )
        ctx = sp.csr_matrix(vec.transform(contexts)) * self.context_weight
        both = sp.csr_matrix(x + ctx)
        norms = np.sqrt(np.asarray(both.multiply(both).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sp.csr_matrix(sp.diags(1.0 / norms) @ both)

    def _truncate(self, row: sp.csr_matrix) -> sp.csr_matrix:
        if row.nnz <= self.max_terms:
            return row
        keep = np.argsort(-row.data)[: self.max_terms]
        return sp.csr_matrix(
            (row.data[keep], (np.zeros(len(keep), dtype=np.int64), row.indices[keep])),
            shape=row.shape,
        )

    def _simhash_bits(self) -> npt.NDArray[np.float32]:
        if not hasattr(self, "_bits"):
            # A fixed random +-1 sign per hashed n-gram and bit: SimHash in one product.
            rng = np.random.default_rng(20140401)
            signs = rng.integers(0, 2, size=(self.n_features, 64), dtype=np.int8) * 2 - 1
            self._bits = signs.astype(np.float32)
        return self._bits

    def simhashes(self, counts: sp.csr_matrix) -> list[str]:
        """Return each row's 64-bit SimHash over its hashed character n-grams (hex)."""
        binary = counts.copy()
        binary.data = np.ones_like(binary.data, dtype=np.float32)
        votes = np.asarray(binary.astype(np.float32) @ self._simhash_bits())
        packed = np.packbits(votes > 0, axis=1)
        return [row.tobytes().hex() for row in packed]

    def _cluster(self, x: sp.csr_matrix) -> npt.NDArray[np.int64]:
        """Average-linkage clusters of rows whose mean cosine similarity >= threshold."""
        n = x.shape[0]
        if n == 1:
            return np.zeros(1, dtype=np.int64)
        from sklearn.cluster import AgglomerativeClustering

        dist = 1.0 - np.asarray((x @ x.T).todense())
        np.clip(dist, 0.0, 2.0, out=dist)
        model = AgglomerativeClustering(
            metric="precomputed",
            linkage="average",
            distance_threshold=1.0 - self.threshold,
            n_clusters=None,
        )
        return np.asarray(model.fit_predict(dist), dtype=np.int64)

    def partial_fit_assign(
        self,
        texts: list[str],
        blocks: list[str],
        voice_ids: list[str],
        contexts: list[str] | None = None,
    ) -> tuple[list[str], FloatArray]:
        """Assign voices (already in processing order) to problems; learn from them.

        A voice joins an existing problem of its block when its mean similarity to the
        problem's members (its dot product with their mean vector) reaches ``threshold``;
        the rest are clustered by average linkage, and each new cluster joins an existing
        problem when the clusters' mean similarity reaches ``threshold`` or becomes a new
        problem.  Returns each voice's problem id and its similarity to that problem.
        """
        self._ensure()
        if not (len(texts) == len(blocks) == len(voice_ids)):
            raise ValueError("texts, blocks and voice_ids must have the same length")
        n = len(texts)
        if n == 0:
            return [], np.zeros(0)
        counts = sp.csr_matrix(self._vectorizer().transform(texts))
        self.df_ += np.bincount(counts.indices, minlength=self.n_features)
        self.n_docs_ += n
        x = self._tfidf(counts)
        if contexts is not None and self.context_weight > 0:
            x = self._with_context(x, contexts)
        hashes = self.simhashes(counts)
        target = np.full(n, -1, dtype=np.int64)
        sims = np.zeros(n)
        by_block: dict[str, list[int]] = {}
        for i, b in enumerate(blocks):
            by_block.setdefault(b, []).append(i)
        for block in sorted(by_block):
            rows = np.asarray(by_block[block], dtype=np.int64)
            for start in range(0, len(rows), self.chunk):
                self._assign_chunk(
                    x, rows[start : start + self.chunk], block, hashes, voice_ids, target, sims
                )
        return [self.problem_ids_[t] for t in target], sims

    chunk: ClassVar[int] = 2000

    def _assign_chunk(
        self,
        x: sp.csr_matrix,
        rows: npt.NDArray[np.int64],
        block: str,
        hashes: list[str],
        voice_ids: list[str],
        target: npt.NDArray[np.int64],
        sims: FloatArray,
    ) -> None:
        existing = [k for k, b in enumerate(self.blocks_) if b == block]
        xr = sp.csr_matrix(x[rows])
        pending = np.ones(len(rows), dtype=bool)
        # Near-duplicates of a voice already grouped go where it went.
        for j, i in enumerate(rows):
            dup = self.simhash_.get(f"{block}|{hashes[i]}")
            if dup is not None:
                target[i], sims[i], pending[j] = dup, 1.0, False
        if existing and pending.any():
            cents = sp.vstack([self.centroids_[k] for k in existing]).tocsr()
            score = np.asarray((xr @ cents.T).todense())
            best = score.argmax(axis=1)
            best_score = score[np.arange(len(rows)), best]
            join = pending & (best_score >= self.threshold)
            for jj in np.flatnonzero(join):
                j = int(jj)
                target[rows[j]] = existing[int(best[j])]
                sims[rows[j]] = float(best_score[j])
            pending &= ~join
        left = np.flatnonzero(pending)
        if len(left):
            labels = self._cluster(sp.csr_matrix(xr[left]))
            uniq, inverse = np.unique(labels, return_inverse=True)
            # Cluster means in one product: indicator^T x / sizes.
            ind = sp.csr_matrix(
                (np.ones(len(left)), (inverse, np.arange(len(left)))), shape=(len(uniq), len(left))
            )
            counts = np.asarray(ind.sum(axis=1)).ravel()
            means = sp.csr_matrix(sp.diags(1.0 / counts) @ ind @ xr[left])
            join_to = np.full(len(uniq), -1, dtype=np.int64)
            if existing:
                cents = sp.vstack([self.centroids_[e] for e in existing]).tocsr()
                score = np.asarray((means @ cents.T).todense())
                best = score.argmax(axis=1)
                ok = score[np.arange(len(uniq)), best] >= self.threshold
                join_to[ok] = np.asarray(existing, dtype=np.int64)[best[ok]]
            member_sim = np.asarray(xr[left].multiply(means[inverse]).sum(axis=1)).ravel()
            sims[rows[left]] = member_sim
            for c in range(len(uniq)):
                members = left[inverse == c]
                k = int(join_to[c])
                if k < 0:
                    k = len(self.problem_ids_)
                    # Named after its earliest voice and the configuration: deterministic.
                    first = int(rows[members.min()])
                    raw = f"{self.config_version}|{block}|{voice_ids[first]}"
                    self.problem_ids_.append("p-" + hashlib.sha1(raw.encode()).hexdigest()[:12])
                    self.blocks_.append(block)
                    self.centroids_.append(sp.csr_matrix((1, self.n_features)))
                    self.sizes_.append(0)
                target[rows[members]] = k
        # Update centroids (running means of member vectors) and the duplicate index.
        touched, where = np.unique(target[rows], return_inverse=True)
        ind = sp.csr_matrix(
            (np.ones(len(rows)), (where, np.arange(len(rows)))), shape=(len(touched), len(rows))
        )
        sums = sp.csr_matrix(ind @ xr)
        added = np.asarray(ind.sum(axis=1)).ravel()
        for j, k in enumerate(touched.tolist()):
            n_old = self.sizes_[k]
            total = self.centroids_[k] * n_old + sums.getrow(j)
            self.sizes_[k] = n_old + int(added[j])
            self.centroids_[k] = self._truncate(sp.csr_matrix(total / self.sizes_[k]))
        for i in rows:
            self.simhash_.setdefault(f"{block}|{hashes[i]}", int(target[i]))

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


def context_tokens(table: pa.Table) -> list[str]:
    """Return each voice's place and local-day tokens (``city:.. district:.. day:..``)."""
    import pyarrow.compute as pc

    n = table.num_rows
    city = table["city"].to_pylist() if "city" in table.column_names else [None] * n
    dist = table["district"].to_pylist() if "district" in table.column_names else [None] * n
    local = pc.cast(
        pc.add(
            pc.cast(table["received_at"], pa.timestamp("us")),
            pa.scalar(8 * 3600 * 1_000_000, pa.duration("us")),
        ),
        pa.date32(),
    ).to_pylist()
    return [
        " ".join(
            [
                f"city:{c}" if c else "",
                f"district:{c}/{d}" if d else "",
                f"day:{day}" if day else "",
            ]
        ).strip()
        for c, d, day in zip(city, dist, local, strict=True)
    ]


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
    # Keywords in the language most of the problem's voices are written in.
    zh = [bool(re.search(r"[\u4e00-\u9fff]", t)) for t in texts]
    major_zh = sum(zh) * 2 >= len(texts)
    texts = [t for t, z in zip(texts, zh, strict=True) if z == major_zh]
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
        # Count a word once per voice so one long transcript does not dominate; dict keeps
        # first-seen order, so ties break the same way on every run (titles are stable).
        counts.update(dict.fromkeys(words, 1))
    return [w for w, _ in counts.most_common(top)]


def title_for(scenario: str | None, words: list[str]) -> str:
    """Return a readable problem title: scenario code and the leading keywords."""
    head = " ".join(words[:3]) if words else "—"
    return f"{scenario} · {head}" if scenario else head
