"""Dashboard latency over a large synthetic lake: overview and voices queries, full pages.

``VOXLOOP_BENCH_WEB_ROWS`` sets the number of voices (default 1,000,000); every voice has
one reading, written in parts of 250,000 rows as ingest would.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from voxloop.config import Settings
from voxloop.ingest.schemas import VOICE_SCHEMA
from voxloop.store.service import write_part

PART = 250_000
PROVINCES = ["江苏", "广东", "浙江", "山东", "河南", "四川", "湖北", "湖南", "河北", "福建"]
CITIES = ["A市", "B市", "C市", "D市", "E市", "F市"]
DISTRICTS = ["一区", "二区", "三区", "四区"]
CHANNELS = ["hotline_10086", "app", "store", "social", "regulator_12300", "web", "sms"]
KINDS = ["complaint", "call_transcript", "chat", "ticket"]
SCENARIOS = ["BILL", "USAGE", "PLAN", "UNSUB", "MKT", "CHNL", "MNET", "HBB", "SVC", "CMPL"]
SENTIMENTS = ["negative", "neutral", "positive"]
TEXTS = [
    "这个月话费多扣了二十元，查不到明细",
    "家里宽带晚上经常断网，报修三天没人来",
    "信号太差，地下车库打不了电话",
    "套餐变更申请了一周还没办好",
    "总接到推销电话，已经说过不要再打",
    "客服电话一直打不通，排队半小时",
    "The app keeps logging me out when I check my bill",
    "退订增值业务后还在扣费，要求退款",
]


def _pick(rng: np.random.Generator, values: list[str], n: int, p: Any = None) -> pa.Array:
    idx = rng.choice(len(values), size=n, p=p).astype(np.int32)
    return pa.DictionaryArray.from_arrays(pa.array(idx), pa.array(values)).cast(pa.string())


def build_lake(settings: Settings, n: int, seed: int = 7) -> None:
    """Write ``n`` synthetic voices and one reading per voice, vectorised."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 9, 1, tzinfo=UTC).timestamp()
    for lo in range(0, n, PART):
        m = min(PART, n - lo)
        ids = pa.array(np.char.add("v", np.arange(lo, lo + m).astype("U10")))
        ts = (start + np.sort(rng.uniform(0, 60 * 86_400, m))) * 1e6
        received = pa.array(ts.astype("int64"), type=pa.timestamp("us", tz="UTC"))
        weights = np.array([8, 4, 3, 2, 1, 1, 1], dtype=float)
        voices = {
            "id": ids,
            "source": pa.array(["bench"] * m),
            "kind": _pick(rng, KINDS, m),
            "received_at": received,
            "province": _pick(rng, PROVINCES, m),
            "city": _pick(rng, CITIES, m),
            "district": _pick(rng, DISTRICTS, m),
            "channel": _pick(rng, CHANNELS, m, weights / weights.sum()),
            "language": pa.array(["zh"] * m),
            "text": _pick(rng, TEXTS, m),
            "content_hash": ids,
            "ingested_at": received,
            "batch_id": pa.array(["bench"] * m),
        }
        table = pa.table(
            {f.name: voices.get(f.name, pa.nulls(m, type=f.type)) for f in VOICE_SCHEMA}
        ).cast(VOICE_SCHEMA)
        write_part(settings, "voices", table)
        readings = pa.table(
            {
                "voice_id": ids,
                "scenario": _pick(rng, SCENARIOS, m),
                "subcategory": pa.nulls(m, type=pa.string()),
                "scenario_confidence": pa.array(rng.uniform(0.3, 1.0, m)),
                "scenario_source": pa.array(["model:bench"] * m),
                "intent": pa.nulls(m, type=pa.string()),
                "sentiment": _pick(rng, SENTIMENTS, m, [0.6, 0.3, 0.1]),
                "sentiment_score": pa.array(rng.uniform(-1, 1, m)),
                "emotion": _pick(rng, ["anger", "neutral", "joy"], m),
                "urgency": pa.array(rng.uniform(0, 1, m)),
                "escalation_risk": pa.array(rng.uniform(0, 1, m) < 0.03),
                "urgency_triggers": pa.nulls(m, type=pa.list_(pa.string())),
                "needs_review": pa.array(rng.uniform(0, 1, m) < 0.08),
                "model_version": pa.array(["bench-1"] * m),
                "read_at": received,
            }
        )
        write_part(settings, "readings", readings)


def _time(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, float]:
    """Return (best uncached seconds, cached seconds) of ``fn``."""
    from voxloop.web.queries import clear_cache

    clear_cache()
    fn()  # warm the OS page cache
    best = float("inf")
    for _ in range(repeat):
        clear_cache()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    t0 = time.perf_counter()
    fn()
    return best, time.perf_counter() - t0


def run() -> str:
    """Build the synthetic lake, time each dashboard query and page; return Markdown."""
    from fastapi.testclient import TestClient

    from voxloop.api.app import create_app
    from voxloop.web.queries import facets, list_voices, overview
    from voxloop.web.schemas import Scope, VoiceFilters

    n = int(os.environ.get("VOXLOOP_BENCH_WEB_ROWS", "1000000"))
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp) / "home", env="test", secret_key="bench-key")
        t0 = time.perf_counter()
        build_lake(settings, n)
        build_s = time.perf_counter() - t0
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cases: list[tuple[str, Callable[[], Any]]] = [
            ("overview(), whole lake", lambda: overview(settings=settings, scope=Scope())),
            (
                "overview(), one province",
                lambda: overview(settings=settings, scope=Scope(province="江苏")),
            ),
            (
                "overview(), last 7 days",
                lambda: overview(settings=settings, scope=Scope(days=7)),
            ),
            (
                "list_voices(), page 1, no filter",
                lambda: list_voices(settings=settings, filters=VoiceFilters()),
            ),
            (
                "list_voices(), page 200 of a channel",
                lambda: list_voices(
                    settings=settings, filters=VoiceFilters(channel="app", page=200)
                ),
            ),
            (
                "list_voices(), scenario + sentiment filter",
                lambda: list_voices(
                    settings=settings,
                    filters=VoiceFilters(scenario="BILL", sentiment="negative"),
                ),
            ),
            (
                "list_voices(), text search",
                lambda: list_voices(settings=settings, filters=VoiceFilters(q="宽带")),
            ),
            (
                "facets()",
                lambda: facets(settings=settings, province="江苏", city="A市"),
            ),
        ]
        client = TestClient(create_app(settings))
        pages = [
            ("GET / (full HTML page)", lambda: client.get("/").raise_for_status()),
            ("GET /voices (full HTML page)", lambda: client.get("/voices").raise_for_status()),
        ]
        load0 = os.getloadavg()[0]
        results = [(name, _time(fn)) for name, fn in cases + pages]
        load1 = os.getloadavg()[0]
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    lines = [
        "## Web dashboard",
        "",
        f"Synthetic lake: {n:,} voices and {n:,} readings in parts of {PART:,} rows "
        f"(built in {build_s:.1f} s). Cold: best of 3 runs with the result cache cleared "
        "(DuckDB over the Parquet lake, only aggregates reach Python). Cached: the same "
        "call again while the lake is unchanged (results are cached per lake version).",
        "",
        "| query | seconds (cold) | seconds (cached) |",
        "|---|---:|---:|",
        *[f"| {name} | {cold:.3f} | {warm:.4f} |" for name, (cold, warm) in results],
        "",
        f"Peak RSS grew by {(rss1 - rss0) / 1024:.0f} MiB while querying "
        f"(max RSS {rss1 / 1024:.0f} MiB including the lake build). Machine load average "
        f"{load0:.1f} before and {load1:.1f} after the timed runs (cold timings grow "
        "roughly in proportion on a busy machine).",
        "",
        "Command: `.venv/bin/python -m benchmarks.run web`",
    ]
    return "\n".join(lines)
