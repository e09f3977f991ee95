"""Run the pipeline stages on Apache Spark: the stage functions themselves, distributed.

Every stage calls the same functions as the in-process pipeline inside ``mapInArrow``;
Spark only decides which executor handles which slice:

* ``ingest``: input files are spread over executors; each runs ``ingest_file`` (normalise,
  validate, pseudonymise, mask). Deduplication stays exact across partitions because every
  commit goes through the lake's writer lock and key store, the in-process rule itself.
* ``understand``: unread voices (with their repeat-contact counts, a Spark window) are read
  by ``read_table`` with the bundle broadcast once; each partition writes a readings part.
* ``detect``: each partition counts its voice part files with ``count_voices``; count
  tables add up, so ``merge_counts`` of the partial tables on the driver gives exactly the
  in-process series (the partial tables are small: series x buckets, not voices).

The lake must be on a filesystem every executor sees (NFS, a mounted bucket) and the
operational store on PostgreSQL when executors run on several hosts (docs/scale.md).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from voxloop.config import Settings

#: Stages the Spark runner knows, in the order they run.
SPARK_STAGES = ("ingest", "understand", "detect", "analyze")


def spark_session(master: str | None, *, app_name: str = "voxloop", local_ip: bool = False) -> Any:
    """Return a SparkSession for ``master`` (None: spark-submit's) with Arrow on, UI off."""
    from pyspark.sql import SparkSession

    # Executors must run this interpreter (it has voxloop and its dependencies).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder if master is None else SparkSession.builder.master(master)
    builder = (
        builder.appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.shuffle.partitions", "8")
    )
    if local_ip:
        builder = builder.config("spark.driver.bindAddress", "127.0.0.1").config(
            "spark.driver.host", "127.0.0.1"
        )
    return builder.getOrCreate()


def _settings_dict(settings: Settings) -> dict[str, Any]:
    # Settings travel to executors as plain values; each rebuilds its own object.
    return settings.model_dump(mode="json")


def spark_ingest(*, spark: Any, settings: Settings, paths: Sequence[Path]) -> dict[str, int]:
    """Ingest files on the executors, one ``ingest_file`` call per file."""
    conf = _settings_dict(settings)
    schema = "read long, stored long, quarantined long, duplicates long"

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from voxloop.ingest.service import ingest_file

        local = Settings(**conf)
        for batch in batches:
            for path in batch.column("path").to_pylist():
                r = ingest_file(settings=local, path=Path(path))
                yield pa.RecordBatch.from_pydict(
                    {
                        "read": [r.read],
                        "stored": [r.stored],
                        "quarantined": [r.quarantined],
                        "duplicates": [r.duplicates],
                    }
                )

    files = [str(p) for p in paths]
    if not files:
        return {"read": 0, "stored": 0, "quarantined": 0, "duplicates": 0}
    # Files are spread over the cores; the per-file counts are few: added on the driver.
    counts = _to_arrow(_paths_frame(spark, files).mapInArrow(run, schema))
    return {name: int(pc.sum(counts.column(name)).as_py() or 0) for name in counts.column_names}


def spark_understand(*, spark: Any, settings: Settings, partitions: int = 0) -> dict[str, Any]:
    """Read every unread voice on the executors; write readings parts into the lake."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    from voxloop.store.service import part_files
    from voxloop.understand.reading import READINGS_TABLE
    from voxloop.understand.service import (
        REPEAT_WINDOW_DAYS,
        latest_model_version,
        load_bundle,
        train,
    )

    voice_files = [str(p) for p in part_files(settings, "voices")]
    if not voice_files:
        return {"read": 0, "model_version": None}
    if latest_model_version(settings) is None:
        train(settings=settings)  # the first reading trains, as the in-process stage does
    bundle = load_bundle(settings=settings)
    # Broadcast once: each executor deserialises the bundle once, not once per batch.
    shared = spark.sparkContext.broadcast(bundle)
    voices = spark.read.parquet(*voice_files).select("id", "text", "customer_id", "received_at")
    latest = voices.dropDuplicates(["id"])
    micros = F.unix_micros(F.col("received_at"))
    window = (
        Window.partitionBy("customer_id")
        .orderBy(micros)
        .rangeBetween(-REPEAT_WINDOW_DAYS * 86_400_000_000, 0)
    )
    counted = latest.withColumn(
        "prior_contacts",
        F.when(F.col("customer_id").isNull(), F.lit(0)).otherwise(F.count("*").over(window) - 1),
    )
    read_files = part_files(settings, READINGS_TABLE)
    if read_files:
        done = (
            spark.read.parquet(*[str(p) for p in read_files])
            .where(F.col("model_version") == bundle.version)
            .select(F.col("voice_id").alias("id"))
        )
        counted = counted.join(done, on="id", how="left_anti")
    todo = counted.select("id", "text", "prior_contacts")
    if partitions:
        todo = todo.repartition(partitions)
    conf = _settings_dict(settings)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import numpy as np

        from voxloop.store.service import write_part
        from voxloop.understand.reading import read_table

        local = Settings(**conf)
        model = shared.value
        for batch in batches:
            if not batch.num_rows:
                continue
            prior = np.asarray(batch.column("prior_contacts").to_numpy(zero_copy_only=False))
            out = read_table(batch, bundle=model, prior_contacts=prior)
            write_part(local, READINGS_TABLE, out)
            yield pa.RecordBatch.from_pydict({"read": [out.num_rows]})

    started = time.perf_counter()
    total = todo.mapInArrow(run, "read long").groupBy().sum().collect()[0][0]
    return {
        "read": int(total or 0),
        "model_version": bundle.version,
        "seconds": round(time.perf_counter() - started, 3),
    }


def spark_counts(*, spark: Any, settings: Settings, granularity: str = "hour") -> pa.Table:
    """Return the count series of every stored voice, counted on the executors."""
    from voxloop.detect.series import COUNT_SCHEMA, merge_counts
    from voxloop.store.service import part_files

    files = [str(p) for p in part_files(settings, "voices")]
    if not files:
        return COUNT_SCHEMA.empty_table()
    conf = _settings_dict(settings)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from voxloop.detect.counts import read_voices
        from voxloop.detect.series import count_voices

        local = Settings(**conf)
        for batch in batches:
            paths = [Path(p) for p in batch.column("path").to_pylist()]
            voices = read_voices(settings=local, files=paths)
            if voices.num_rows:
                yield from count_voices(voices, granularity=granularity).to_batches()

    df = _paths_frame(spark, files)
    partial = df.mapInArrow(run, "series string, bucket long, count long")
    # The partial count tables are small (series x buckets, not voices): adding them on the
    # driver with the in-process merge saves a shuffle stage and its scheduling cost.
    table = merge_counts(_to_arrow(partial))
    return table.sort_by([("series", "ascending"), ("bucket", "ascending")])


def _paths_frame(spark: Any, paths: Sequence[str]) -> Any:
    """Return a one-column DataFrame of ``paths`` spread over the cluster's cores."""
    # A local relation is sliced over min(rows, default parallelism) tasks with no shuffle
    # and no Python job; repartition() or parallelize() each cost a stage more per job
    # (measured: 0.7 s against 2.4-2.6 s for a trivial job, docs/scale.md).
    return spark.createDataFrame([(p,) for p in paths], "path string")


def _to_arrow(df: Any) -> pa.Table:
    """Collect a (small) DataFrame as an Arrow table."""
    if hasattr(df, "toArrow"):  # pyspark >= 4
        table: pa.Table = df.toArrow()
        return table
    return pa.Table.from_pandas(df.toPandas(), preserve_index=False)


def spark_detect(*, spark: Any, settings: Settings, granularity: str = "hour") -> dict[str, Any]:
    """Recount the series on Spark, save them, then detect on the driver as in-process."""
    from voxloop.act.sources import link_to_problem_orders
    from voxloop.detect.series import save_counts
    from voxloop.detect.service import detect_stage, state_dir

    counts = spark_counts(spark=spark, settings=settings, granularity=granularity)
    save_counts(state_dir(settings) / f"counts_{granularity}.parquet", counts)
    # Surge detection and grouping work on the (small) count series and new voices.
    summary = detect_stage(settings=settings, link_orders=link_to_problem_orders)
    return {"series_rows": counts.num_rows, **summary}


def run_spark(
    *,
    master: str | None,
    settings: Settings,
    stages: Sequence[str] = SPARK_STAGES,
    inputs: Sequence[Path] = (),
    spark: Any = None,
    local_ip: bool = False,
) -> dict[str, Any]:
    """Run the chosen stages on Spark against ``settings.home``'s lake; return summaries."""
    unknown = [s for s in stages if s not in SPARK_STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; choose from {list(SPARK_STAGES)}")
    session = spark or spark_session(master, local_ip=local_ip)
    out: dict[str, Any] = {}
    try:
        for stage in SPARK_STAGES:
            if stage not in stages:
                continue
            started = time.perf_counter()
            if stage == "ingest":
                out[stage] = spark_ingest(spark=session, settings=settings, paths=inputs)
            elif stage == "understand":
                out[stage] = spark_understand(spark=session, settings=settings)
            elif stage == "detect":
                out[stage] = spark_detect(spark=session, settings=settings)
            else:
                from voxloop.analyze.service import analysis_stage

                # The analyses fit models on aggregates: they run on the driver.
                out[stage] = analysis_stage(settings=settings)
            elapsed = time.perf_counter() - started
            rows = out[stage].get("read") if isinstance(out[stage], dict) else None
            rate = f" ({rows / max(elapsed, 1e-9):,.0f} rows/s)" if isinstance(rows, int) else ""
            print(f"spark {stage}: {elapsed:.1f} s{rate} {out[stage]}", file=sys.stderr, flush=True)
    finally:
        if spark is None:
            session.stop()
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point for ``spark-submit -m``-style runs: ``python -m voxloop.pipeline.spark``."""
    import argparse
    import json

    from voxloop.config import load_settings

    parser = argparse.ArgumentParser(prog="voxloop.pipeline.spark")
    # Unset: the master spark-submit was given (--master there), else Spark's default.
    parser.add_argument("--master", default=None)
    parser.add_argument("--stages", default=",".join(SPARK_STAGES))
    parser.add_argument("--lake", type=Path, default=None, help="voxloop home (lake root)")
    parser.add_argument("inputs", nargs="*", type=Path)
    args = parser.parse_args(argv)
    settings = load_settings(**({"home": args.lake} if args.lake else {}))
    result = run_spark(
        master=args.master,
        settings=settings,
        stages=[s for s in args.stages.split(",") if s],
        inputs=args.inputs,
    )
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
