"""Knowledge base: FAQ import with versions, and hybrid retrieval for answers.

Retrieval fuses two rankings with reciprocal rank fusion (Cormack, Clarke & Büttcher 2009,
"Reciprocal rank fusion outperforms Condorcet and individual rank learning methods",
SIGIR): Okapi BM25 over rjieba tokens (Robertson & Zaragoza 2009) and the cosine of
multilingual USE v3 sentence embeddings (Yang et al. 2020).
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import re
import threading
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Self

import numpy as np
import pyarrow as pa

from voxloop.assist.schemas import Answer, AnswerRequest, Candidate, KbEntry, KbImportResult
from voxloop.config import Settings
from voxloop.errors import UnusableInputError

#: Lake table holding every version of every entry (append-only).
KB_TABLE = "kb_entries"
#: The constant of reciprocal rank fusion (60 in Cormack et al.).
RRF_K = 60
_TAGS = re.compile(r"<[^>]+>")
_BREAKS = re.compile(r"<br\s*/?>", re.IGNORECASE)
_FIELDS = ("entry_id", "question", "answer", "region", "valid_from", "valid_to")


def _entry_id(question: str) -> str:
    return "kb-" + hashlib.sha1(question.strip().encode("utf-8")).hexdigest()[:12]


def _clean_answer(text: str) -> str:
    # FAQ exports carry HTML, sometimes entity-escaped twice (&lt;a href=...&gt;): the
    # assistant quotes plain text, with line breaks kept.
    text = html.unescape(html.unescape(text))
    return _TAGS.sub("", _BREAKS.sub("\n", text)).strip()


def _row_entry(raw: dict[str, Any], where: str) -> KbEntry:
    question = str(raw.get("question") or "").strip()
    answer = _clean_answer(str(raw.get("answer") or ""))
    if not question:
        raise UnusableInputError(f"{where}: field 'question' is empty")
    if not answer:
        raise UnusableInputError(f"{where}: field 'answer' is empty")
    values: dict[str, Any] = {"question": question, "answer": answer}
    values["entry_id"] = str(raw.get("entry_id") or raw.get("id") or _entry_id(question))
    values["region"] = str(raw.get("region") or "").strip() or None
    for field in ("valid_from", "valid_to"):
        value = raw.get(field)
        if value:
            try:
                values[field] = date.fromisoformat(str(value)[:10])
            except ValueError as exc:
                raise UnusableInputError(
                    f"{where}: field {field!r} is not a date (YYYY-MM-DD): {value!r}"
                ) from exc
    try:
        return KbEntry(**values)
    except ValueError as exc:
        raise UnusableInputError(f"{where}: {exc}") from exc


def parse_kb_file(path: Path) -> list[KbEntry]:
    """Read a FAQ file (JSON object or list, CSV with question/answer columns, Markdown)."""
    if not path.is_file():
        raise UnusableInputError(f"{path}: no such file")
    text = path.read_bytes().decode("utf-8-sig", errors="strict")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UnusableInputError(f"{path}: line {exc.lineno}: not JSON ({exc.msg})") from exc
        if isinstance(data, dict):
            rows = [{"question": q, "answer": a} for q, a in data.items()]
        elif isinstance(data, list) and all(isinstance(r, dict) for r in data):
            rows = data
        else:
            raise UnusableInputError(f"{path}: expected an object or a list of objects")
        return [_row_entry(r, f"{path}: entry {i + 1}") for i, r in enumerate(rows)]
    if suffix in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ",")
        missing = {"question", "answer"} - set(reader.fieldnames or ())
        if missing:
            raise UnusableInputError(f"{path}: missing column(s) {sorted(missing)}")
        return [_row_entry(r, f"{path}: row {i + 2}") for i, r in enumerate(reader)]
    if suffix in (".md", ".markdown"):
        return _parse_markdown(text, path)
    raise UnusableInputError(f"{path}: unknown FAQ format {suffix!r} (json, csv, tsv, md)")


def _parse_markdown(text: str, path: Path) -> list[KbEntry]:
    # One entry per heading: the heading is the question, the text below it the answer.
    entries: list[KbEntry] = []
    question: str | None = None
    body: list[str] = []
    line_no = 0

    def flush() -> None:
        if question is not None:
            raw = {"question": question, "answer": "\n".join(body).strip()}
            entries.append(_row_entry(raw, f"{path}: line {line_no}"))

    lines = text.splitlines()
    # A file with "## " questions keeps its "# " title out of the entries.
    marker = "## " if any(line.startswith("## ") for line in lines) else "# "
    for i, line in enumerate(lines, start=1):
        if line.startswith(marker):
            flush()
            question, body, line_no = line.lstrip("#").strip(), [], i
        elif question is not None and not line.startswith("#"):
            body.append(line)
    flush()
    if not entries:
        raise UnusableInputError(f"{path}: no '## question' headings found")
    return entries


def _read_all(settings: Settings) -> list[KbEntry]:
    from voxloop.store.service import lake_connection, part_files

    if not part_files(settings, KB_TABLE):
        return []
    con = lake_connection(settings, (KB_TABLE,))
    rows = con.execute(
        f"SELECT {', '.join(_FIELDS)}, version FROM {KB_TABLE} ORDER BY entry_id, version"
    ).fetchall()
    return [KbEntry(**dict(zip((*_FIELDS, "version"), r, strict=True))) for r in rows]


def current_entries(settings: Settings) -> list[KbEntry]:
    """Return the latest version of every knowledge-base entry."""
    latest: dict[str, KbEntry] = {}
    for entry in _read_all(settings):
        latest[entry.entry_id] = entry  # rows come ordered by version
    return list(latest.values())


def import_kb(*, settings: Settings, path: Path) -> KbImportResult:
    """Import a FAQ file: new entries at version 1, changed ones at the next version."""
    from voxloop.store.service import write_part, writer_lock

    entries = parse_kb_file(path)
    seen: set[str] = set()
    for entry in entries:
        if entry.entry_id in seen:
            raise UnusableInputError(f"{path}: entry id {entry.entry_id!r} appears twice")
        seen.add(entry.entry_id)
    with writer_lock(settings, KB_TABLE):
        latest = {e.entry_id: e for e in current_entries(settings)}
        new: list[KbEntry] = []
        added = updated = 0
        for entry in entries:
            old = latest.get(entry.entry_id)
            if old is None:
                new.append(entry)
                added += 1
            elif old.model_dump(exclude={"version"}) != entry.model_dump(exclude={"version"}):
                new.append(entry.model_copy(update={"version": old.version + 1}))
                updated += 1
        if new:
            now = datetime.now(UTC)
            cols: dict[str, Any] = {f: [getattr(e, f) for e in new] for f in _FIELDS}
            cols["version"] = [e.version for e in new]
            cols["imported_at"] = [now] * len(new)
            cols["source"] = [path.name] * len(new)
            write_part(settings, KB_TABLE, pa.table(cols))
    _INDEXES.clear()
    return KbImportResult(
        source=str(path),
        read=len(entries),
        added=added,
        updated=updated,
        unchanged=len(entries) - added - updated,
    )


def tokens(text: str) -> list[str]:
    """Split text into rjieba words (Chinese) and lower-cased word tokens (other scripts)."""
    import rjieba

    return [t.lower() for t in rjieba.cut_for_search(text) if t.strip()]


class KbRetriever:
    """Hybrid BM25 + sentence-encoder retrieval over knowledge-base entries.

    Parameters
    ----------
    encoder : an object with ``encode(texts) -> ndarray`` of L2-normalised rows, or None
        for BM25 alone.
    rrf_k : the reciprocal-rank-fusion constant.
    depth : how many candidates each ranking contributes to the fusion.
    """

    def __init__(self, *, encoder: Any | None = None, rrf_k: int = RRF_K, depth: int = 20):
        self.encoder = encoder
        self.rrf_k = rrf_k
        self.depth = depth

    def fit(self, entries: Sequence[KbEntry]) -> Self:
        """Index the entries' questions and answers."""
        import bm25s

        self.entries_ = list(entries)
        docs = [tokens(f"{e.question} {e.question} {e.answer}") for e in self.entries_]
        self.bm25_ = bm25s.BM25()
        # bm25s cannot index an empty corpus; a KB whose entries are all retired is empty,
        # and search() answers nothing for it before it reads the index.
        if docs:
            self.bm25_.index(docs, show_progress=False)
        self.vectors_ = (
            self.encoder.encode([e.question for e in self.entries_])
            if self.encoder is not None and self.entries_
            else None
        )
        return self

    def search(
        self, query: str, *, k: int = 3, allowed: Sequence[bool] | None = None
    ) -> list[tuple[int, float, float]]:
        """Return ``(entry index, fused score, cosine)`` of the best ``k`` entries."""
        n = len(self.entries_)
        if n == 0:
            return []
        mask = np.ones(n, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
        fused = np.zeros(n)
        q_tokens = tokens(query)
        if q_tokens:
            lexical = np.asarray(self.bm25_.get_scores(q_tokens), dtype=float)
            lexical[~mask] = -np.inf
            order = np.argsort(-lexical, kind="stable")[: self.depth]
            for rank, idx in enumerate(order):
                if lexical[idx] > 0:
                    fused[idx] += 1.0 / (self.rrf_k + rank + 1)
        cosine = np.zeros(n)
        if self.vectors_ is not None and self.encoder is not None:
            cosine = self.vectors_ @ self.encoder.encode([query])[0]
            dense = np.where(mask, cosine, -np.inf)
            for rank, idx in enumerate(np.argsort(-dense, kind="stable")[: self.depth]):
                fused[idx] += 1.0 / (self.rrf_k + rank + 1)
        fused[~mask] = 0.0
        best = [int(i) for i in np.argsort(-fused, kind="stable")[:k] if fused[i] > 0]
        return [(i, float(fused[i]), float(cosine[i])) for i in best]


_INDEXES: dict[tuple[str, int], KbRetriever] = {}
_INDEX_LOCK = threading.Lock()


def retriever(settings: Settings) -> KbRetriever:
    """Return the retriever over the current entries (built once per KB state)."""
    from voxloop.store.service import part_files
    from voxloop.understand.encoders import Usem3Encoder

    key = (str(settings.lake_dir.resolve()), len(part_files(settings, KB_TABLE)))
    with _INDEX_LOCK:
        index = _INDEXES.get(key)
        if index is None:
            index = KbRetriever(encoder=Usem3Encoder()).fit(current_entries(settings))
            _INDEXES[key] = index
    return index


def _applies(entry: KbEntry, region: str | None, on: date) -> bool:
    if entry.valid_from is not None and on < entry.valid_from:
        return False
    if entry.valid_to is not None and on > entry.valid_to:
        return False
    # An entry for 江苏 applies to 江苏/南京; a national entry (no region) applies everywhere.
    return entry.region is None or (
        region is not None and (region == entry.region or region.startswith(entry.region + "/"))
    )


def answer_question(*, settings: Settings, request: AnswerRequest, k: int = 3) -> Answer:
    """Answer a question from the knowledge base, or route it to a human when unsure.

    The confidence is the encoder cosine between the question and the best entry's
    question; below ``settings.assist_answer_threshold`` the assistant says it does not
    know rather than guess.
    """
    index = retriever(settings)
    on = request.on or datetime.now(UTC).date()
    allowed = [_applies(e, request.region, on) for e in index.entries_]
    hits = index.search(request.question, k=k, allowed=allowed)
    candidates = [
        Candidate(
            entry_id=index.entries_[i].entry_id,
            version=index.entries_[i].version,
            question=index.entries_[i].question,
            score=round(score, 6),
            similarity=round(cos, 4),
        )
        for i, score, cos in hits
    ]
    confidence = candidates[0].similarity if candidates else 0.0
    if not candidates or confidence < settings.assist_answer_threshold:
        return Answer(
            known=False,
            answer=None,
            entry_id=None,
            version=None,
            confidence=confidence,
            routed_to_human=True,
            candidates=candidates,
        )
    top = index.entries_[hits[0][0]]
    return Answer(
        known=True,
        answer=top.answer,
        entry_id=top.entry_id,
        version=top.version,
        confidence=confidence,
        routed_to_human=False,
        candidates=candidates,
    )
