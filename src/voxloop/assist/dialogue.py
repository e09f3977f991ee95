"""Dialogue satisfaction: dissatisfied / neutral / satisfied from the turns of a conversation.

The model (:class:`DialogueSatisfaction`) reads character n-grams (TF-IDF) of the last turns
plus turn-structure cues — system refusals and apologies, the user repeating a request,
turn counts — with a class-balanced multinomial logistic regression. It is trained and
evaluated on USS (Sun et al. 2021, "Simulating User Satisfaction for the Evaluation of
Task-oriented Dialogue Systems", SIGIR) with that paper's protocol: ratings 1-5 by several
annotators, the label is the most frequent rating (ties to the lower one, as in the
authors' code), collapsed to 3 classes (<3 dissatisfied, 3 neutral, >3 satisfied); 10
contiguous folds in file order. Exchange level: the satisfaction of each user turn is
predicted from the dialogue before it (annotators rated "before the user's sentence").

Chinese dialogues: USS's only Chinese domain (JDDC) is not in ../shared/data, so the
USS-trained model is applied to English conversations only; Chinese transcripts are
scored by rules over the understanding bundle's sentiment of the customer's last turns
and unresolved cues (``method`` says which was used).
"""

from __future__ import annotations

import gzip
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import numpy as np
import pyarrow as pa

from voxloop.config import Settings
from voxloop.errors import UnusableInputError
from voxloop.understand.estimators import PersistMixin

CLASSES = np.array(["dissatisfied", "neutral", "satisfied"])
USS_DOMAINS = ("MWOZ", "SGD", "ReDial", "CCPE", "JDDC")
MODEL_FILE = "dialogue_satisfaction.pkl"
TABLE = "dialogue_satisfaction"

#: A dialogue as the model sees it: (role, text) pairs, role "user" or "system".
Dialogue = Sequence[tuple[str, str]]


@dataclass
class UssDialogue:
    """One USS dialogue: its turns with per-annotator ratings of user turns, and overall."""

    turns: list[tuple[str, str, list[int]]] = field(default_factory=list)
    overall: list[int] = field(default_factory=list)


def majority_rating(ratings: Sequence[int]) -> int:
    """Return the most frequent rating (1-5); ties go to the lower one (as the USS code)."""
    if not ratings:
        raise ValueError("no ratings")
    counts = np.bincount(np.asarray(ratings) - 1, minlength=5)
    return int(np.argmax(counts)) + 1


def three_class(rating: int) -> str:
    """Collapse a 1-5 rating: <3 dissatisfied, 3 neutral, >3 satisfied."""
    return "dissatisfied" if rating < 3 else ("neutral" if rating == 3 else "satisfied")


def uss_path(root: Path, domain: str) -> Path:
    """Return the USS file of ``domain`` under ``root`` (``.txt`` or ``.txt.gz``)."""
    for name in (f"{domain}.txt.gz", f"{domain}.txt"):
        if (root / name).exists():
            return root / name
    have = [
        d for d in USS_DOMAINS if (root / f"{d}.txt.gz").exists() or (root / f"{d}.txt").exists()
    ]
    raise UnusableInputError(
        f"USS domain {domain!r}: no {domain}.txt(.gz) under {root}"
        + (" (JDDC was not obtained, see SOURCE.md)" if domain == "JDDC" else "")
        + f"; available: {', '.join(have) or 'none'}"
    )


def available_domains(root: Path) -> list[str]:
    """Return the USS domains whose file exists under ``root``."""
    return [
        d for d in USS_DOMAINS if (root / f"{d}.txt.gz").exists() or (root / f"{d}.txt").exists()
    ]


def load_uss(path: Path) -> list[UssDialogue]:
    """Read a USS file: ``role, text, action, ratings`` per line, a blank line between dialogues."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            raw = fh.read()
    except OSError as exc:
        raise UnusableInputError(f"{path}: cannot read USS file ({exc})") from exc
    dialogues: list[UssDialogue] = []
    current = UssDialogue()
    for lineno, line in enumerate(raw.split("\n"), start=1):
        if not line.strip():
            if current.turns:
                dialogues.append(current)
            current = UssDialogue()
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise UnusableInputError(f"{path}, line {lineno}: expected tab-separated role and text")
        role, text = parts[0].strip().upper(), parts[1].strip()
        cell = parts[3] if len(parts) > 3 else ""
        try:
            ratings = [int(x) for x in cell.split(",") if x.strip()]
        except ValueError as exc:
            raise UnusableInputError(
                f"{path}, line {lineno}: ratings {cell!r} are not integers"
            ) from exc
        if role == "USER" and text == "OVERALL":
            current.overall = ratings
        else:
            current.turns.append(("user" if role == "USER" else "system", text, ratings))
    if current.turns:
        dialogues.append(current)
    return dialogues


# --------------------------------------------------------------------------- features

_NEG = re.compile(
    r"\b(?:sorry|unfortunately|no|not|none|cannot|can't|unable|don't|doesn't|isn't|aren't|"
    r"couldn't|nothing|unavailable)\b|抱歉|对不起|没有|无法|不能|办不了|不好意思|不支持",
    re.I,
)
_OK = re.compile(
    r"\b(?:booked|reference|confirmed|done|successfully|reserved|here is|here are)\b|"
    r"已经|已为您|成功|办好|处理好",
    re.I,
)
_USER_NEG = re.compile(
    r"\b(?:no|not|wrong|again|still|actually|instead|didn't|doesn't|won't)\b|还是|不对|不是|又|怎么还|没用",
    re.I,
)
_THANKS = re.compile(r"\b(?:thanks|thank you|great|perfect|bye)\b|谢谢|好的|再见|满意", re.I)


def _words(text: str) -> set[str]:
    return set(
        re.findall(r"\w", text.lower())
        if re.search(r"[\u4e00-\u9fff]", text)
        else re.findall(r"\w+", text.lower())
    )


def structure_features(dialogue: Dialogue) -> list[float]:
    """Return turn-structure cues of a dialogue (counts of refusals, repeats, lengths)."""
    system = [t for r, t in dialogue if r != "user"]
    user = [t for r, t in dialogue if r == "user"]
    last_s = system[-1] if system else ""
    last_u = user[-1] if user else ""
    sets = [_words(t) for t in user]
    a = sets[-1] if sets else set()
    b = sets[-2] if len(sets) > 1 else set()
    repeats = [len(x & y) / max(len(x | y), 1) for x, y in itertools.pairwise(sets)]
    return [
        float(len(dialogue)),
        float(len(user)),
        float(np.log1p(len(last_s))),
        float(np.log1p(len(last_u))),
        float(len(_NEG.findall(last_s))),
        float(len(_OK.findall(last_s))),
        float(last_s.count("?") + last_s.count("？")),
        float(sum(len(_NEG.findall(t)) for t in system)),
        float(sum(len(_NEG.findall(t)) for t in system[-3:])),
        float(len(_USER_NEG.findall(last_u))),
        float(sum(len(_USER_NEG.findall(t)) for t in user)),
        float(len(_THANKS.findall(last_u))),
        (len(a & b) / len(a | b)) if a | b else 0.0,
        float(max(repeats)) if repeats else 0.0,
    ]


def _view(dialogue: Dialogue, k: int) -> str:
    return " ".join(("U: " if r == "user" else "S: ") + t for r, t in dialogue[-k:])


class DialogueSatisfaction(PersistMixin):
    """Three-class satisfaction of a dialogue (or of the next user turn) from its turns.

    Parameters
    ----------
    context_turns : how many of the last turns the n-gram view reads.
    max_features : size of the character n-gram vocabulary.
    C : inverse regularisation strength of the logistic regression.

    Notes
    -----
    Character 2-4-grams (``char_wb``, language-agnostic) of the last turns with role
    markers, plus :func:`structure_features` (standardised), into a multinomial logistic
    regression with balanced class weights so that the rare dissatisfied/satisfied
    classes are not swamped by neutral. A linear baseline for the USS task of Sun et al.
    2021 (SIGIR), whose published models are hierarchical GRUs and BERT.
    """

    def __init__(
        self, *, context_turns: int = 4, max_features: int = 5_000, C: float = 1.0
    ) -> None:
        self.context_turns = context_turns
        self.max_features = max_features
        self.C = C

    def _matrix(self, dialogues: Sequence[Dialogue], dense: np.ndarray | None = None) -> Any:
        from scipy import sparse

        text = self.vectorizer_.transform([_view(d, self.context_turns) for d in dialogues])
        if dense is None:
            dense = np.asarray([structure_features(d) for d in dialogues])
        scaled = (dense - self.mean_) / self.scale_
        return sparse.hstack([text, sparse.csr_matrix(scaled)]).tocsr()

    def fit(self, dialogues: Sequence[Dialogue], labels: Sequence[str]) -> Self:
        """Learn the vocabulary, feature scaling and classifier from labelled dialogues."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        y = np.asarray([str(v) for v in labels])
        unknown = sorted(set(y) - set(CLASSES))
        if unknown:
            raise ValueError(f"labels: unknown class(es) {unknown}; expected {list(CLASSES)}")
        if len(dialogues) != len(y):
            raise ValueError(f"{len(dialogues)} dialogues but {len(y)} labels")
        self.vectorizer_ = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=(2, 4),
            max_features=self.max_features,
            min_df=2,
            sublinear_tf=True,
            dtype=np.float32,
        ).fit([_view(d, self.context_turns) for d in dialogues])
        dense = np.asarray([structure_features(d) for d in dialogues])
        self.mean_ = dense.mean(axis=0)
        self.scale_ = np.where(dense.std(axis=0) > 0, dense.std(axis=0), 1.0)
        self.model_ = LogisticRegression(C=self.C, class_weight="balanced", max_iter=2_000).fit(
            self._matrix(dialogues, dense), y
        )
        self.classes_ = np.asarray(self.model_.classes_)
        return self

    def predict_proba(self, dialogues: Sequence[Dialogue]) -> np.ndarray:
        """Return probabilities in ``classes_`` order, one row per dialogue."""
        out: np.ndarray = self.model_.predict_proba(self._matrix(dialogues))
        return out

    def predict(self, dialogues: Sequence[Dialogue]) -> np.ndarray:
        """Return dissatisfied / neutral / satisfied per dialogue."""
        out: np.ndarray = self.classes_[np.argmax(self.predict_proba(dialogues), axis=1)]
        return out


# --------------------------------------------------------------------------- evaluation


def uss_samples(
    dialogues: Sequence[UssDialogue], *, level: str
) -> tuple[list[list[tuple[str, str]]], list[str], np.ndarray]:
    """Return (inputs, 3-class labels, dialogue index) for ``level`` dialogue or exchange."""
    xs: list[list[tuple[str, str]]] = []
    ys: list[str] = []
    groups: list[int] = []
    for gi, d in enumerate(dialogues):
        pairs = [(r, t) for r, t, _ in d.turns]
        if level == "dialogue":
            if d.overall:
                xs.append(pairs)
                ys.append(three_class(majority_rating(d.overall)))
                groups.append(gi)
        elif level == "exchange":
            for i, (role, _text, ratings) in enumerate(d.turns):
                if role == "user" and ratings:
                    xs.append(pairs[:i])
                    ys.append(three_class(majority_rating(ratings)))
                    groups.append(gi)
        else:
            raise ValueError(f"level {level!r}: expected 'dialogue' or 'exchange'")
    return xs, ys, np.asarray(groups)


def _metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from scipy.stats import spearmanr
    from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, recall_score

    order = {c: i for i, c in enumerate(CLASSES)}
    yi = np.array([order[v] for v in y])
    pi = np.array([order[v] for v in pred])
    rho = spearmanr(yi, pi).statistic if len(set(pi)) > 1 and len(set(yi)) > 1 else 0.0
    return {
        "accuracy": round(float(accuracy_score(y, pred)), 4),
        "macro_f1": round(float(f1_score(y, pred, average="macro", labels=CLASSES)), 4),
        "uar": round(float(recall_score(y, pred, average="macro", labels=CLASSES)), 4),
        "kappa": round(float(cohen_kappa_score(y, pred)), 4),
        "spearman": round(float(rho), 4),
        "dissatisfied_f1": round(
            float(f1_score(y == "dissatisfied", pred == "dissatisfied", zero_division=0)), 4
        ),
    }


def evaluate_uss(
    *,
    root: Path,
    domain: str,
    level: str = "dialogue",
    folds: int = 10,
    max_folds: int | None = None,
    model: DialogueSatisfaction | None = None,
) -> dict[str, Any]:
    """Cross-validate the model on one USS domain; return accuracy, macro-F1 and more.

    Folds are ``folds`` contiguous slices of the dialogues in file order (the USS authors
    slice their sample list the same way; slicing whole dialogues keeps one dialogue out
    of two folds). ``max_folds`` evaluates only the first folds (to bound run time); the
    figures then cover those test folds only. The majority class (neutral) is reported
    alongside as the floor.
    """
    dialogues = load_uss(uss_path(root, domain))
    xs, ys, groups = uss_samples(dialogues, level=level)
    y = np.asarray(ys)
    edges = np.linspace(0, len(dialogues), folds + 1).astype(int)
    used = range(min(folds, max_folds or folds))
    pred = np.full(len(y), "", dtype=object)
    tested = np.zeros(len(y), dtype=bool)
    base = model or DialogueSatisfaction()
    for f in used:
        test = (groups >= edges[f]) & (groups < edges[f + 1])
        train_idx = np.flatnonzero(~test)
        fitted = clone_model(base)
        fitted.fit([xs[i] for i in train_idx], y[train_idx].tolist())
        test_idx = np.flatnonzero(test)
        pred[test_idx] = fitted.predict([xs[i] for i in test_idx])
        tested |= test
    yt, pt = y[tested], pred[tested].astype(str)
    counts = {c: int((yt == c).sum()) for c in CLASSES}
    majority = np.full(len(yt), "neutral")
    return {
        "domain": domain,
        "level": level,
        "samples": int(tested.sum()),
        "folds": f"{len(used)} of {folds} (contiguous, file order)",
        "class_counts": counts,
        **_metrics(yt, pt),
        "majority_accuracy": round(float((yt == "neutral").mean()), 4),
        "majority_macro_f1": _metrics(yt, majority)["macro_f1"],
    }


def clone_model(model: DialogueSatisfaction) -> DialogueSatisfaction:
    """Return an unfitted copy of ``model`` with the same parameters."""
    return DialogueSatisfaction(**model.get_params())


# --------------------------------------------------------------------------- voxloop voices


def model_path(settings: Settings) -> Path:
    """Return where the USS-trained dialogue model is saved."""
    return settings.home / "models" / "assist" / MODEL_FILE


def train_dialogue_model(
    *, settings: Settings, root: Path, domains: Sequence[str] | None = None
) -> dict[str, Any]:
    """Train the dialogue-level model on every available USS domain; save it."""
    chosen = list(domains or available_domains(root))
    if not chosen:
        raise UnusableInputError(f"no USS files under {root}")
    xs: list[list[tuple[str, str]]] = []
    ys: list[str] = []
    for domain in chosen:
        x, y, _ = uss_samples(load_uss(uss_path(root, domain)), level="dialogue")
        xs.extend(x)
        ys.extend(y)
    model = DialogueSatisfaction().fit(xs, ys)
    path = model.save(model_path(settings))
    return {"path": str(path), "domains": chosen, "dialogues": len(xs)}


_CJK = re.compile(r"[\u4e00-\u9fff]")
_UNRESOLVED = re.compile(
    r"还是不行|还是没|没用|没解决|解决不了|不满意|算了|太差|投诉|怎么还|还不能|太慢"
)
SCORE_SCHEMA = pa.schema(
    [
        ("voice_id", pa.string()),
        ("customer_id", pa.string()),
        ("p_dissatisfied", pa.float64()),
        ("satisfaction", pa.string()),
        ("method", pa.string()),
        ("scored_at", pa.timestamp("us", tz="UTC")),
    ]
)


def score_conversations(
    texts: Sequence[str], *, bundle: Any, model: DialogueSatisfaction | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (p_dissatisfied, class, method) per transcript.

    English transcripts use ``model`` when given; Chinese ones (and all without a model)
    use rules: the bundle's sentiment of the customer's last two turns, the whole
    customer side, and unresolved cues ("还是不行", "投诉") in the last turns.
    """
    from voxloop.assist.summary import parse_transcript
    from voxloop.understand.reading import read_table

    n = len(texts)
    p = np.zeros(n)
    label = np.full(n, "neutral", dtype=object)
    method = np.full(n, "rules", dtype=object)
    turns = [parse_transcript(t) if t and t.strip() else [] for t in texts]
    dialogues = [
        [("user" if x.speaker == "customer" else "system", x.text) for x in ts] for ts in turns
    ]
    english = np.array(
        [
            model is not None and bool(d) and not _CJK.search(t)
            for d, t in zip(dialogues, texts, strict=True)
        ]
    )
    if english.any() and model is not None:
        idx = np.flatnonzero(english)
        proba = model.predict_proba([dialogues[i] for i in idx])
        classes = list(model.classes_)
        p[idx] = proba[:, classes.index("dissatisfied")]
        label[idx] = np.asarray(model.classes_)[np.argmax(proba, axis=1)]
        method[idx] = "uss_model"
    rest = [int(i) for i in np.flatnonzero(~english)]
    if rest:
        cust = [[t for r, t in dialogues[i] if r == "user"] or [texts[i] or ""] for i in rest]
        rows = pa.table(
            {
                "id": [f"{i}:{k}" for i in rest for k in ("all", "end")],
                "text": [s for c in cust for s in ("。".join(c), "。".join(c[-2:]))],
            }
        )
        read = read_table(rows, bundle=bundle)
        score = np.asarray(read.column("sentiment_score").to_pylist(), dtype=float).reshape(-1, 2)
        for j, i in enumerate(rest):
            tail = "。".join(cust[j][-2:])
            # Weights: the call's end counts most (peak-end), an explicit unresolved cue next.
            raw = 0.5 * max(-score[j, 1], 0) + 0.2 * max(-score[j, 0], 0)
            raw += 0.4 if _UNRESOLVED.search(tail) else 0.0
            p[i] = min(1.0, raw)
            label[i] = (
                "dissatisfied" if p[i] >= 0.4 else ("satisfied" if score[j, 1] > 0.2 else "neutral")
            )
    return p, label, method


def dissatisfaction_scores(
    *, settings: Settings, voice_ids: Sequence[str] | None = None, only_new: bool = False
) -> pa.Table:
    """Score the lake's call transcripts and chats (or ``voice_ids``); return SCORE_SCHEMA rows.

    ``p_dissatisfied`` feeds problems and churn: join on ``voice_id`` (or aggregate per
    ``customer_id``). The USS model is used when one was trained
    (:func:`train_dialogue_model`); otherwise, and for Chinese, the rules. ``only_new``
    skips voices already in the ``dialogue_satisfaction`` table.
    """
    from voxloop.store.service import lake_connection
    from voxloop.understand.service import load_bundle

    con = lake_connection(settings, ("voices", TABLE))
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    if "voices" not in views:
        return SCORE_SCHEMA.empty_table()
    where = "kind IN ('call_transcript', 'chat')"
    if voice_ids is not None:
        con.register("wanted", pa.table({"vid": pa.array(list(voice_ids), pa.string())}))
        where = "id IN (SELECT vid FROM wanted)"
    if only_new and TABLE in views:
        where += f" AND id NOT IN (SELECT voice_id FROM {TABLE})"
    rows = con.execute(
        f"SELECT id, customer_id, text FROM (SELECT * FROM voices "
        f"QUALIFY row_number() OVER (PARTITION BY id) = 1) WHERE {where} ORDER BY id"
    ).fetchall()
    if not rows:
        return SCORE_SCHEMA.empty_table()
    path = model_path(settings)
    model = DialogueSatisfaction.load(path) if path.exists() else None
    p, label, method = score_conversations(
        [r[2] or "" for r in rows], bundle=load_bundle(settings=settings), model=model
    )
    now = datetime.now(UTC)
    return pa.table(
        {
            "voice_id": [r[0] for r in rows],
            "customer_id": [r[1] for r in rows],
            "p_dissatisfied": p.astype(float),
            "satisfaction": label.astype(str).tolist(),
            "method": method.astype(str).tolist(),
            "scored_at": pa.array([now] * len(rows), pa.timestamp("us", tz="UTC")),
        },
        schema=SCORE_SCHEMA,
    )


def write_dissatisfaction(
    *, settings: Settings, voice_ids: Sequence[str] | None = None, only_new: bool = True
) -> dict[str, Any]:
    """Score conversations not scored yet; append them to the lake table ``dialogue_satisfaction``.

    Usable as a post-ingest stage: ``write_dissatisfaction(settings=settings)``.
    """
    from voxloop.store.service import write_part, writer_lock

    table = dissatisfaction_scores(settings=settings, voice_ids=voice_ids, only_new=only_new)
    with writer_lock(settings, TABLE):
        path = write_part(settings, TABLE, table)
    methods = table.column("method").to_pylist() if table.num_rows else []
    return {
        "scored": table.num_rows,
        "dissatisfied": int(
            sum(v == "dissatisfied" for v in table.column("satisfaction").to_pylist())
        ),
        "by_method": {m: methods.count(m) for m in sorted(set(methods))},
        "path": str(path) if path else None,
    }
