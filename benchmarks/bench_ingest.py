"""Ingest throughput and memory: end-to-end ``ingest_file`` against a raw DuckDB insert.

A synthetic voices CSV (Chinese texts, 5 % with a phone number to mask, 100 k distinct
customers, one attribute column) is written under /tmp with vectorised numpy.  The
ingest runs in a fresh subprocess that reports its wall time, CPU time and peak RSS
(``VmHWM``); the reference is DuckDB inserting the same rows, already in memory as
an Arrow table with the lake's column types, into an on-disk table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

ROWS = int(os.environ.get("VOXLOOP_BENCH_INGEST_ROWS", "1000000"))
#: Optional extra run on a file of this many MB (e.g. 2000 for the 2 GB memory target).
BIG_MB = int(os.environ.get("VOXLOOP_BENCH_INGEST_BIG_MB", "0"))
SMALL = ROWS // 4

_WORDS = np.array(
    [
        "我的话费",
        "流量超出",
        "套餐变更",
        "网络信号差",
        "宽带断网",
        "客服态度",
        "营销短信",
        "退订失败",
        "请尽快处理",
        "非常不满意",
        "账单有误",
        "扣费异常",
    ]
)


def make_csv(path: Path, rows: int, seed: int = 0) -> pa.Table:
    """Write ``rows`` synthetic voices to ``path`` and return them as text columns."""
    table = _voices(rows, seed, first_id=0)
    pacsv.write_csv(table, path)
    return table


def make_big_csv(path: Path, target_bytes: int) -> int:
    """Append 1 M-row chunks (new ids, new seed each) until ``path`` reaches the size."""
    rows = 0
    writer = None
    try:
        while not path.exists() or path.stat().st_size < target_bytes:
            chunk = _voices(1_000_000, seed=100 + rows // 1_000_000, first_id=rows)
            if writer is None:
                writer = pacsv.CSVWriter(path, chunk.schema)
            writer.write_table(chunk)
            rows += chunk.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows


def _voices(rows: int, seed: int, first_id: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    ts = np.datetime64("2026-09-01T00:00:00") + rng.integers(0, 60 * 86400, rows).astype(
        "timedelta64[s]"
    )
    w = _WORDS[rng.integers(0, len(_WORDS), (rows, 4))]
    text = np.char.add(np.char.add(w[:, 0], w[:, 1]), np.char.add(w[:, 2], w[:, 3]))
    text = np.where(rng.random(rows) < 0.05, np.char.add(text, "，联系电话13812345678"), text)
    table = pa.table(
        {
            "id": np.char.add("v", np.arange(first_id, first_id + rows).astype(str)),
            "source": pa.nulls(rows, pa.string()).fill_null("bench"),
            "kind": pa.nulls(rows, pa.string()).fill_null("complaint"),
            "received_at": np.datetime_as_string(ts),
            "customer_id": np.char.add("1380", rng.integers(0, 100_000, rows).astype(str)),
            "province": np.array(["江苏", "浙江", "广东", "北京"])[rng.integers(0, 4, rows)],
            "city": np.array(["南京", "杭州", "广州", "北京"])[rng.integers(0, 4, rows)],
            "channel": np.array(["hotline_10086", "app", "web", "store"])[rng.integers(0, 4, rows)],
            "text": text,
            "attr.scenario": np.array(["BILL", "USAGE", "PLAN", "MNET", "HBB"])[
                rng.integers(0, 5, rows)
            ],
        }
    )
    return table


_CHILD = """
import collections, json, sys, time
import voxloop.ingest.readers as readers
import voxloop.ingest.service as service
import voxloop.ingest.pii as pii
from voxloop.config import Settings

cpu = collections.Counter()

def timed(module, name, label):
    inner = getattr(module, name)
    def wrapper(*args, **kwargs):
        c = time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            cpu[label] += time.process_time() - c
    setattr(module, name, wrapper)

# Per-stage CPU; the stages do not nest except masking, which is inside the lake table.
timed(service, "normalize", "typing, validation, hashing (DuckDB)")
timed(pii, "mask_array", "PII masking")
timed(service._KeyCache, "duplicates", "dedup (key cache, batch)")
timed(service._KeyCache, "refresh", "dedup (read new keys parts)")
timed(service, "write_part", "Parquet lake parts")
timed(service, "_write_keys", "Parquet keys parts")
timed(service, "_register_identities", "identity registration")
timed(service, "apply_mapping", "mapping")
timed(readers, "_cast_text", "UTF-8 check")
s = Settings(home=sys.argv[2], env="test", secret_key="bench-secret")
t, c = time.perf_counter(), time.process_time()
r = service.ingest_file(settings=s, path=sys.argv[1], kind="voice")
dt, dc = time.perf_counter() - t, time.process_time() - c
# VmHWM is this process image's own peak; ru_maxrss would include the parent's RSS at
# fork time, which Linux carries across exec.
with open("/proc/self/status") as fh:
    hwm = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
print(json.dumps({"seconds": dt, "cpu": dc, "stages": cpu, "maxrss_kb": hwm,
                  **r.model_dump()}))
"""


def _ingest_subprocess(csv_path: Path, home: Path, *, pipeline: bool = False) -> dict[str, Any]:
    env = dict(os.environ, VOXLOOP_INGEST_PIPELINE="1" if pipeline else "0")
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(csv_path), str(home)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _duckdb_insert(table: pa.Table, folder: Path) -> tuple[float, float]:
    """Return (wall, CPU) seconds DuckDB takes to insert ``table`` into an on-disk table."""
    import duckdb

    from voxloop.ingest.schemas import TS

    typed = table.set_column(
        table.schema.get_field_index("received_at"),
        "received_at",
        pa.compute.cast(table.column("received_at"), pa.timestamp("us")).cast(TS),
    )
    con = duckdb.connect(str(folder / "ref.duckdb"))
    con.execute("SET enable_progress_bar = false")
    con.execute(
        "CREATE TABLE voices (id VARCHAR, source VARCHAR, kind VARCHAR, "
        "received_at TIMESTAMPTZ, customer_id VARCHAR, province VARCHAR, city VARCHAR, "
        'channel VARCHAR, text VARCHAR, "attr.scenario" VARCHAR)'
    )
    con.register("src", typed)
    t, c = time.perf_counter(), time.process_time()
    con.execute("INSERT INTO voices SELECT * FROM src")
    con.execute("CHECKPOINT")
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    con.close()
    return seconds, cpu


def run() -> str:
    """Measure ingest rows/s and peak RSS, and the ratio to a raw DuckDB insert."""
    folder = Path(tempfile.mkdtemp(prefix="voxloop-bench-ingest-", dir="/tmp"))
    try:
        big = folder / "voices.csv"
        small = folder / "voices_small.csv"
        table = make_csv(big, ROWS)
        make_csv(small, SMALL, seed=1)
        size_mb = big.stat().st_size / 1e6
        run_small = _ingest_subprocess(small, folder / "home_small")
        run_big = _ingest_subprocess(big, folder / "home_big")
        again = _ingest_subprocess(big, folder / "home_big")
        run_pipe = _ingest_subprocess(big, folder / "home_pipe", pipeline=True)
        duck_s, duck_cpu = _duckdb_insert(table, folder)
        load = os.getloadavg()[0]
        big_rows, run_huge = 0, None
        if BIG_MB:
            del table
            huge = folder / "voices_big.csv"
            big_rows = make_big_csv(huge, BIG_MB * 1_000_000)
            huge_mb = huge.stat().st_size / 1e6
            run_huge = _ingest_subprocess(huge, folder / "home_huge")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ingest_rps = ROWS / run_big["seconds"]
    duck_rps = ROWS / duck_s
    ratio = ingest_rps / duck_rps
    cpu_ratio = duck_cpu / run_big["cpu"]
    stages = dict(run_big["stages"])
    stages["other (CSV parsing, batching, lineage, imports)"] = run_big["cpu"] - sum(
        stages.values()
    )
    stage_rows = [
        f"| {name} | {sec:.2f} |" for name, sec in sorted(stages.items(), key=lambda kv: -kv[1])
    ]
    body = "\n".join(
        [
            "## ingest",
            "",
            f"Synthetic voices CSV: {ROWS:,} rows, {size_mb:.0f} MB (UTF-8, Chinese text, 5 % "
            "with a phone number, 100 k customers); `ingest_file` in a fresh process "
            "(parse, map, validate, pseudonymise, mask PII, dedup, write Parquet + keys, "
            "register identities in SQLite).",
            "",
            "| measure | value |",
            "|---|---|",
            f"| ingest {ROWS:,} rows | {run_big['seconds']:.1f} s, **{ingest_rps:,.0f} rows/s** |",
            f"| stored / duplicates | {int(run_big['stored']):,} / "
            f"{int(run_big['duplicates']):,} |",
            f"| peak RSS, {ROWS:,} rows | {run_big['maxrss_kb'] / 1024:.0f} MB |",
            f"| peak RSS, {SMALL:,} rows | {run_small['maxrss_kb'] / 1024:.0f} MB |",
            f"| re-ingest same file (all duplicates) | {again['seconds']:.1f} s, "
            f"{int(again['duplicates']):,} duplicates, {int(again['stored'])} stored |",
            f"| DuckDB insert of the same rows (Arrow → on-disk table) | {duck_s:.2f} s, "
            f"{duck_rps:,.0f} rows/s |",
            f"| ratio ingest / DuckDB insert, wall clock (target ≥ 25 %) | **{ratio:.0%}** |",
            f"| CPU seconds: ingest / DuckDB insert | {run_big['cpu']:.1f} / {duck_cpu:.1f} "
            f"(ratio {cpu_ratio:.0%}) |",
            f"| same, with the opt-in pipeline thread (`VOXLOOP_INGEST_PIPELINE=1`) | "
            f"{run_pipe['seconds']:.1f} s, {ROWS / run_pipe['seconds']:,.0f} rows/s, "
            f"ratio {ROWS / run_pipe['seconds'] / duck_rps:.0%}, CPU {run_pipe['cpu']:.1f} s, "
            f"peak RSS {run_pipe['maxrss_kb'] / 1024:.0f} MB |",
            f"| 1-minute load average at the end (machine shared) | {load:.1f} |",
            "",
            f"Where the ingest CPU goes ({ROWS:,} rows, per-stage `process_time`, CPU s):",
            "",
            "| stage | CPU s |",
            "|---|---|",
            *stage_rows,
            "",
            "A plain insert does none of the per-row work (sha256 pseudonyms, md5 content "
            "hash and keys, regex PII scan, validation), which bounds the ratio.",
            "",
            "Peak RSS does not grow with the file (batches of `batch_size` rows, streaming "
            "CSV reader). Dedup keys of the stored rows are cached in the run's DuckDB "
            "connection (up to 2^20 rows, 32 MiB) and under the writer lock only keys parts "
            "written since the last batch (by any process) are read; once the lake outgrows "
            "the cache, the run drops it and streams all stored keys from disk past each "
            "batch, so a very large lake costs time, not memory.",
            "",
            "Beyond the ingest package, the largest stages are PII masking "
            "(`understand.pii.mask_array`: a Python regex pass over the rows its prefilter "
            "keeps) and the Parquet encoding of lake parts (`store.service.write_part`; "
            "unique columns are written without dictionary encoding).",
        ]
    )
    if run_huge is not None:
        body += (
            f"\n\nLarge file: {big_rows:,} rows, {huge_mb:,.0f} MB CSV: ingested in "
            f"{run_huge['seconds']:.0f} s ({big_rows / run_huge['seconds']:,.0f} rows/s), "
            f"**peak RSS {run_huge['maxrss_kb'] / 1024:.0f} MB** (target < 500 MB); "
            f"stored {int(run_huge['stored']):,}, quarantined {int(run_huge['quarantined'])}, "
            f"duplicates {int(run_huge['duplicates']):,}."
        )
    return body


if __name__ == "__main__":
    print(run())
