"""Quality-inspection benchmark: conversations per second on one core, per-rule P/R.

Conversations come from the demo generator (``generate_operator``), which plants agent
behaviour and writes which rules each conversation violates to ``ground_truth.json``.
The default rule pack was written from the domain reference and then corrected after
reading the misses on generator seeds 11 and 7; the figures below are on seed 23, which
was not looked at while writing the rules.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

#: Seed of the held-out generated operator (not used while writing the rule pack).
HELD_OUT_SEED = 23
CUSTOMERS = 8000
DAYS = 30
#: Conversations per timed engine run (the generated ones, repeated).
ENGINE_ROWS = 20_000


def _one_core() -> None:
    # One core: Arrow compute and BLAS would otherwise use every core they find.
    import pyarrow as pa

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def _generated(folder: Path) -> list[dict[str, Any]]:
    from voxloop.demo.generator import generate_operator

    generate_operator(customers=CUSTOMERS, days=DAYS, seed=HELD_OUT_SEED, out_dir=folder)
    truth = json.loads((folder / "ground_truth.json").read_text(encoding="utf-8"))
    wanted = set(truth.get("qa_conversations", []))
    rows = []
    with (folder / "voices.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if row["id"] in wanted:
                rows.append(row)
    return rows


def _engine_rate(rows: list[dict[str, Any]]) -> dict[str, float]:
    import pyarrow as pa

    from voxloop.assist.qa_engine import Inspector, inspect_table, load_pack, parse_turns

    inspector = Inspector(load_pack())
    texts = [r["text"] for r in rows]
    reps = -(-ENGINE_ROWS // len(texts))
    table = pa.table(
        {
            "id": [f"b{i}" for i in range(len(texts) * reps)],
            "text": (texts * reps)[: len(texts) * reps],
        }
    )
    turns = len(parse_turns(table.column("text")).conv)
    inspect_table(table.slice(0, 1000), inspector=inspector, run_id="w", inspected_at=_now())
    wall, cpu = [], []
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        inspect_table(table, inspector=inspector, run_id="b", inspected_at=_now())
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {
        "rows": float(table.num_rows),
        "turns": float(turns),
        "conv_per_s": table.num_rows / statistics.median(wall),
        "conv_per_cpu_s": table.num_rows / statistics.median(cpu),
        "turns_per_s": turns / statistics.median(wall),
    }


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _stage_and_quality(folder: Path, home: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from voxloop.assist.qa import evaluate_qa, qa_stage
    from voxloop.config import Settings
    from voxloop.ingest.service import ingest_path
    from voxloop.store.service import migrate

    settings = Settings(home=home, env="test", secret_key="bench-secret-key")
    migrate(settings)
    ingest_path(settings=settings, path=folder / "voices.jsonl")
    qa_stage(settings=settings)  # compiles the pack and imports the lexicon once
    # Time a second run over every conversation: a new pack version re-inspects all.
    import shutil

    from voxloop.store.service import table_dir

    for table in ("qa_conversations", "qa_hits"):
        shutil.rmtree(table_dir(settings, table), ignore_errors=True)
    stage = qa_stage(settings=settings)
    report = evaluate_qa(settings=settings, truth=folder / "ground_truth.json")
    return stage, report


def _cell(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def qa_section() -> str:
    """Run the QA benchmark and return a Markdown section."""
    _one_core()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "gen"
        rows = _generated(folder)
        if not rows:
            return (
                "## Assist: quality inspection\n\nskipped: the generator wrote no conversations\n"
            )
        engine = _engine_rate(rows)
        stage, report = _stage_and_quality(folder, Path(tmp) / "home")
    timed = sum(1 for r in rows if r["text"].lstrip().startswith("["))
    lines = [
        "## Assist: quality inspection (质检)",
        "",
        f"Generated operator (seed {HELD_OUT_SEED}, {CUSTOMERS} customers, {DAYS} days): "
        f"{len(rows)} agent conversations ({timed} with timed turns), planted violations "
        "from the generator's ground truth. Default pack `src/voxloop/assist/qa_rules.yaml` "
        f"({report['pack_version']}); one core (Arrow CPU count 1).",
        "",
        "| throughput | conversations/s (wall) | conversations per CPU-second | turns/s |",
        "|---|---:|---:|---:|",
        f"| engine (`inspect_table`, {int(engine['rows'])} conversations, "
        f"{int(engine['turns'])} turns, median of 3) | {engine['conv_per_s']:,.0f} | "
        f"{engine['conv_per_cpu_s']:,.0f} | {engine['turns_per_s']:,.0f} |",
        f"| stage (`qa_stage`: DuckDB read of the lake, inspection, Parquet writes; "
        f"{stage['conversations']} conversations) | "
        f"{stage['conversations'] / max(stage['seconds'], 1e-9):,.0f} | | |",
        "",
        "Wall-clock rates depend on what else the machine runs; the CPU-second rate is the "
        "capacity of one core (the engine is single-threaded here).",
        "",
        "Per-rule precision and recall against the generator's planted violations "
        f"({report['conversations']} conversations; timing rules over timed ones only):",
        "",
        "| rule | tp | fp | fn | precision | recall | F1 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in [*report["rules"], {"rule_id": "**all rules (micro)**", **report["micro"]}]:
        lines.append(
            f"| {row['rule_id']} | {row['tp']} | {row['fp']} | {row['fn']} | "
            f"{_cell(row['precision'])} | {_cell(row['recall'])} | {_cell(row['f1'])} |"
        )
    lines += [
        "",
        "- `empathy_when_angry` reads anger and distress with the understand lexicon (a "
        "threat to complain, 投诉/曝光, counts as anger) plus impatience cues, and expects "
        "an apology or empathy within two turns; the generator plants the violation only "
        "where it scripted an upset customer, so the two definitions differ at the margin.",
        "- `solicit_good_rating` (诱导好评) is not planted by the generator: its row can only "
        "show false positives.",
    ]
    return "\n".join(lines)


def run() -> str:
    """Run the section (``python -m benchmarks.run assist_qa``)."""
    return qa_section()


if __name__ == "__main__":
    print(qa_section())
