"""Scale-out: in-process vs Spark ``local[2]`` rows/s, and NATS JetStream → lake.

Synthetic voices (Chinese texts, a phone number to mask in each) are written as 4 JSONL
files under /tmp. The in-process path ingests them with ``ingest_file`` and counts the
series with ``count_voices``; the Spark path runs ``run_spark`` (ingest) and
``spark_counts`` on ``local[2]`` over the same files, in the same run. The NATS run
publishes voices carrying their send time to a fresh stream while ``voxloop consume``
(a subprocess) stores them; a watcher notes when each lake part file appears, so the
latency is send time → the moment a new query can see the row (publish → queryable).
The consumer's CPU time (from /proc) gives voices per CPU-second, the basis of the
capacity plan in docs/scale.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROWS = int(os.environ.get("VOXLOOP_BENCH_SCALE_ROWS", "1000000"))
NATS_ROWS = int(os.environ.get("VOXLOOP_BENCH_SCALE_NATS_ROWS", "50000"))
NATS_BATCH = int(os.environ.get("VOXLOOP_BENCH_SCALE_NATS_BATCH", "10000"))
#: Consumer processes sharing the durable consumer (the server splits the batches).
NATS_CONSUMERS = int(os.environ.get("VOXLOOP_BENCH_SCALE_NATS_CONSUMERS", "1"))
FILES = 4
SECRET = "bench-secret-key"


def _voice(i: int, sent: float | None = None) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": f"b{i}",
        "source": "hotline",
        "kind": "complaint",
        "received_at": f"2026-09-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00+08:00",
        "customer_id": f"139{i % 100_000:08d}",
        "province": "江苏",
        "city": ("南京", "苏州", "无锡")[i % 3],
        "channel": ("app", "hotline", "web")[i % 3],
        "text": f"第{i}条：宽带又断了，联系电话1390000{i % 10000:04d}",
    }
    if sent is not None:
        rec["attributes"] = {"sent": f"{sent:.6f}"}
    return rec


def _write_inputs(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    per = ROWS // FILES
    for f in range(FILES):
        path = folder / f"voices_{f}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for i in range(f * per, (f + 1) * per):
                fh.write(json.dumps(_voice(i), ensure_ascii=False) + "\n")
        paths.append(path)
    return paths


def _settings(home: Path) -> Any:
    from voxloop.config import Settings

    return Settings(home=home, env="test", secret_key=SECRET, stages_after_push=False)


def _in_process(paths: list[Path], home: Path) -> dict[str, float]:
    from voxloop.detect.series import count_voices
    from voxloop.detect.service import read_voices
    from voxloop.ingest.service import ingest_file
    from voxloop.store.service import part_files

    s = _settings(home)
    t, c = time.perf_counter(), time.process_time()
    for p in paths:
        ingest_file(settings=s, path=p)
    ingest, ingest_cpu = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    count_voices(read_voices(settings=s, files=part_files(s, "voices")))
    counts, counts_cpu = time.perf_counter() - t, time.process_time() - c
    stored = sum(f.stat().st_size for f in part_files(s, "voices"))
    stored += sum(f.stat().st_size for f in (home / "keys" / "voices").glob("part-*.parquet"))
    # CPU-seconds of this process (all its threads): rows per CPU-second do not depend on
    # what else the machine runs, unlike the wall-clock rates.
    return {
        "ingest": ingest,
        "counts": counts,
        "ingest_cpu": ingest_cpu,
        "counts_cpu": counts_cpu,
        "bytes": float(stored),
    }


def _spark(paths: list[Path], home: Path) -> dict[str, float]:
    from voxloop.pipeline.spark import run_spark, spark_counts, spark_session

    t = time.perf_counter()
    spark = spark_session("local[2]", app_name="voxloop-bench", local_ip=True)
    spark.createDataFrame([(1,)], "x long").collect()  # JVM side only
    start = time.perf_counter() - t

    def trivial() -> float:
        # One mapInArrow job over a local relation that does nothing: the fixed price of a
        # Python stage (scheduling, Arrow round trip to the Python workers).
        t = time.perf_counter()
        spark.createDataFrame([(1,), (2,)], "x long").mapInArrow(lambda it: it, "x long").collect()
        return time.perf_counter() - t

    workers = trivial()  # the first one also starts the Python workers
    overhead = min(trivial() for _ in range(3))
    s = _settings(home)
    t = time.perf_counter()
    run_spark(master="local[2]", settings=s, stages=["ingest"], inputs=paths, spark=spark)
    ingest = time.perf_counter() - t
    t = time.perf_counter()
    spark_counts(spark=spark, settings=s)
    counts_cold = time.perf_counter() - t
    t = time.perf_counter()
    spark_counts(spark=spark, settings=s)
    counts = time.perf_counter() - t
    spark.stop()
    return {
        "start": start,
        "workers": workers,
        "overhead": overhead,
        "ingest": ingest,
        "counts_cold": counts_cold,
        "counts": counts,
    }


def _nats_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=1):
            return True
    except OSError:
        return False


async def _publish(stream: str, n: int) -> float:
    import nats

    nc = await nats.connect("nats://127.0.0.1:4222")
    t = time.perf_counter()
    for i in range(n):
        data = json.dumps(_voice(i, sent=time.time()), ensure_ascii=False).encode()
        await nc.publish(f"{stream.lower()}.in", data)
        if i % 1000 == 0:
            await nc.flush()
            await asyncio.sleep(0)
    await nc.flush()
    elapsed = time.perf_counter() - t
    await nc.close()
    return elapsed


async def _stream(stream: str, create: bool) -> None:
    import nats

    nc = await nats.connect("nats://127.0.0.1:4222")
    js = nc.jetstream()
    if create:
        await js.add_stream(name=stream, subjects=[f"{stream.lower()}.>"])
    else:
        await js.delete_stream(stream)
    await nc.close()


def _cpu_seconds(pid: int) -> float:
    """Return the CPU time (user + system) process ``pid`` has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _watch_parts(
    folder: Path, seen: dict[str, float], cpu: list[float], pids: list[int], done: threading.Event
) -> None:
    """Record when each part file of ``folder`` first becomes visible (queryable).

    ``cpu`` gets the consumers' CPU time (all processes) at each new part: its last value
    is the CPU they had used when the last part appeared (start-up excluded by the caller).
    """
    last = dict.fromkeys(pids, 0.0)
    while not done.is_set():
        now = time.time()
        for pid in pids:
            used = _cpu_seconds(pid)
            if used == used:  # not NaN: a process that has exited keeps its last reading
                last[pid] = used
        if folder.is_dir():
            for p in folder.glob("part-*.parquet"):
                if p.name not in seen:
                    seen[p.name] = now
                    cpu.append(sum(last.values()))
        time.sleep(0.02)


def _nats(home: Path) -> dict[str, float]:
    from voxloop.store.service import lake_connection, table_dir

    stream = "BENCH" + uuid.uuid4().hex[:8].upper()
    asyncio.run(_stream(stream, create=True))
    env = {**os.environ, "VOXLOOP_HOME": str(home), "VOXLOOP_ENV": "test"}
    env["VOXLOOP_SECRET_KEY"] = SECRET
    cmd = [str(Path(sys.executable).parent / "voxloop"), "consume", "nats://127.0.0.1:4222"]
    cmd += ["--stream", stream, "--subject", f"{stream.lower()}.>", "--no-stages"]
    # The idle exit must outlast the consumers' start-up plus the 3 s below on a loaded
    # box, or a consumer leaves before the first message (it ends no measured span).
    cmd += ["--idle-exit", "10", "--progress", "0", "--batch", str(NATS_BATCH)]
    # Room for two batches per process: one stored while the next arrives.
    cmd += ["--max-ack-pending", str(2 * NATS_BATCH * NATS_CONSUMERS)]
    seen: dict[str, float] = {}
    cpu: list[float] = []
    done = threading.Event()
    procs = []
    for _ in range(NATS_CONSUMERS):
        # Creating the same durable consumer twice is idempotent: they start together.
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    pids = [p.pid for p in procs]
    folder = table_dir(_settings(home), "voices")
    watcher = threading.Thread(
        target=_watch_parts, args=(folder, seen, cpu, pids, done), daemon=True
    )
    watcher.start()
    time.sleep(3)  # the consumers are connected and waiting before the clock starts
    cpu_start = sum(_cpu_seconds(pid) for pid in pids)
    load = os.getloadavg()[0]
    try:
        publish_s = asyncio.run(_publish(stream, NATS_ROWS))
        for proc in procs:
            proc.communicate(timeout=600)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        done.set()
        watcher.join()
        asyncio.run(_stream(stream, create=False))
    load = max(load, os.getloadavg()[0])
    consumer_cpu = cpu[-1] - cpu_start
    con = lake_connection(_settings(home), ("voices",))
    rows = con.execute(
        "SELECT parse_filename(filename), CAST(element_at(attributes, 'sent')[1] AS DOUBLE) "
        "FROM read_parquet($g, filename = true)",
        {"g": str(table_dir(_settings(home), "voices") / "part-*.parquet")},
    ).fetchall()
    con.close()
    # Publish -> queryable: the first poll (every 20 ms) that saw the row's part file.
    lat = np.array([seen[name] - sent for name, sent in rows])
    span = max(seen.values()) - min(sent for _, sent in rows)
    return {
        "rows": float(len(rows)),
        "publish_s": publish_s,
        "rate": len(rows) / span,
        "cpu_rate": len(rows) / consumer_cpu,
        "load": load,
        "parts": float(len(seen)),
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
    }


def run() -> str:
    """Measure in-process vs Spark local[2] and NATS → lake; return Markdown."""
    tmp = Path(tempfile.mkdtemp(prefix="voxloop-bench-scale-"))
    load = [os.getloadavg()[0]]
    try:
        t = time.perf_counter()
        paths = _write_inputs(tmp / "in")
        write_s = time.perf_counter() - t
        local = _in_process(paths, tmp / "local")
        load.append(os.getloadavg()[0])
        spark = _spark(paths, tmp / "spark")
        load.append(os.getloadavg()[0])
        nats_error = None
        try:
            nats = _nats(tmp / "nats") if _nats_up() else None
        except subprocess.TimeoutExpired as exc:
            # Keep the Spark figures of a long run when the streaming part fails.
            nats, nats_error = None, f"the consumer did not finish: {exc}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = [
        "## Scale-out",
        "",
        f"{ROWS:,} synthetic voices in {FILES} JSONL files (written in {write_s:.0f} s; set "
        "VOXLOOP_BENCH_SCALE_ROWS for another size). The machine's 1-minute load average "
        f"during the run: {', '.join(f'{x:.1f}' for x in load)} on {os.cpu_count()} cores "
        "(other jobs share them, so wall-clock rates are below what an idle machine gives).",
        "",
        "| stage | in-process rows/s | Spark local[2] rows/s | Spark / in-process |",
        "|---|---:|---:|---:|",
    ]
    for stage in ("ingest", "counts"):
        a, b = ROWS / local[stage], ROWS / spark[stage]
        out.append(f"| {stage} | {a:,.0f} | {b:,.0f} | {b / a:.2f} |")
    out += [
        "",
        f"In-process CPU: ingest {ROWS / local['ingest_cpu']:,.0f} rows per CPU-second, "
        f"counts {ROWS / local['counts_cpu']:,.0f} rows per CPU-second. Lake size: "
        f"{local['bytes'] / ROWS:.0f} bytes per voice (voices parts and dedup keys; these "
        "synthetic texts are about 30 characters).",
    ]
    out += [
        "",
        f"Spark: session start {spark['start']:.1f} s; first Python job (starts the Python "
        f"workers) {spark['workers']:.2f} s; fixed cost of one trivial mapInArrow job on warm "
        f"workers {spark['overhead']:.2f} s (paid per stage). The counts row is the second "
        f"count on warm workers; the first took {spark['counts_cold']:.1f} s (each Python "
        "worker imports the count code once).",
        "",
    ]
    if nats_error is not None:
        out.append(f"NATS → lake: FAILED, {nats_error}.")
    elif nats is None:
        out.append("NATS → lake: skipped, no NATS server on 127.0.0.1:4222.")
    else:
        out += [
            f"NATS JetStream → lake: {nats['rows']:,.0f} voices published in "
            f"{nats['publish_s']:.1f} s by one Python publisher on the same machine; "
            f"{NATS_CONSUMERS} consumer process(es) on one durable consumer, batches of "
            f"{NATS_BATCH:,} ({nats['parts']:.0f} part files).",
            "",
            f"- sustained **{nats['rate']:,.0f} voices/s** (first send → last part queryable);",
            f"- latency publish → queryable (the row's part file visible to a new query, "
            f"polled every 20 ms): **p50 {nats['p50']:.2f} s, p99 {nats['p99']:.2f} s**;",
            f"- the consumers used {nats['rows'] / nats['cpu_rate']:.1f} CPU-seconds: "
            f"**{nats['cpu_rate']:,.0f} voices per CPU-second** (start-up excluded); load "
            f"average up to {nats['load']:.1f} meanwhile.",
        ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(run())
