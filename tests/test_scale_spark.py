"""The Spark runner (``local[2]``) stores, quarantines, reads and counts like in-process."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from voxloop.config import Settings
from voxloop.store.service import lake_connection

pytestmark = pytest.mark.skipif(
    shutil.which("java") is None, reason="no Java runtime: apt-get install openjdk-17-jre-headless"
)


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    from voxloop.pipeline.spark import spark_session

    session = spark_session("local[2]", app_name="voxloop-tests", local_ip=True)
    yield session
    session.stop()


def _input(tmp: Path) -> Path:
    from voxloop.demo.generator import generate_operator

    generate_operator(customers=1000, days=14, out_dir=tmp / "gen")
    lines = (tmp / "gen" / "voices.jsonl").read_text(encoding="utf-8").splitlines()
    bad = json.loads(lines[3])
    bad["id"], bad["received_at"] = "broken-1", "not a time"
    # A repeated record, a non-JSON line and an invalid record next to the generated ones.
    lines += [lines[0], "{oops", json.dumps(bad, ensure_ascii=False)]
    path = tmp / "voices.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _rows(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    con = lake_connection(settings)
    try:
        return sorted(con.execute(sql).fetchall(), key=repr)
    finally:
        con.close()


def test_spark_local_matches_in_process(tmp_path: Path, spark: Any) -> None:
    from voxloop.detect.series import count_voices
    from voxloop.detect.service import read_voices
    from voxloop.ingest.service import ingest_file
    from voxloop.pipeline.spark import run_spark, spark_counts
    from voxloop.store.service import part_files
    from voxloop.understand.service import models_dir, read_new_voices

    source = _input(tmp_path)
    local = Settings(home=tmp_path / "local", env="test", secret_key="test-secret-key")
    dist = Settings(home=tmp_path / "spark", env="test", secret_key="test-secret-key")

    result = ingest_file(settings=local, path=source)
    assert result.quarantined == 2 and result.duplicates == 1
    read_new_voices(settings=local)
    # Same understanding bundle on both sides (training is not part of the comparison).
    shutil.copytree(models_dir(local), models_dir(dist))
    summary = run_spark(
        master="local[2]",
        settings=dist,
        stages=["ingest", "understand"],
        inputs=[source],
        spark=spark,
    )
    assert summary["ingest"] == {
        "read": result.read,
        "stored": result.stored,
        "quarantined": result.quarantined,
        "duplicates": result.duplicates,
    }

    stored = (
        "SELECT id, source, kind, received_at, occurred_at, customer_id, province, city, "
        "district, channel, language, text, attributes, pii_counts FROM voices"
    )
    assert _rows(local, stored) == _rows(dist, stored)
    quarantine = "SELECT source_row, field, reason, raw FROM quarantine"
    q = _rows(local, quarantine)
    assert len(q) == 2 and q == _rows(dist, quarantine)

    con = lake_connection(local)
    cols = [d[0] for d in con.execute("SELECT * FROM readings LIMIT 0").description]
    con.close()
    reading = "SELECT " + ", ".join(c for c in cols if c != "read_at") + " FROM readings"
    readings, spread = _rows(local, reading), _rows(dist, reading)
    assert len(readings) == len(spread) == result.stored
    for mine, theirs in zip(readings, spread, strict=True):
        # Labels are identical; scores may differ in the last float32 bits, because the
        # encoder's matrix products see other batch compositions on the executors (sums of
        # 512 float32 products: a few 1e-6 relative, measured up to 1.3e-6).
        assert [v for v in mine if not isinstance(v, float)] == [
            v for v in theirs if not isinstance(v, float)
        ]
        floats = [v for v in theirs if isinstance(v, float)]
        assert [v for v in mine if isinstance(v, float)] == pytest.approx(floats, rel=1e-5)

    expected = count_voices(read_voices(settings=local, files=part_files(local, "voices")))
    got = spark_counts(spark=spark, settings=dist)
    order = [("series", "ascending"), ("bucket", "ascending")]
    assert got.num_rows > 0
    assert got.equals(expected.sort_by(order).cast(got.schema))
    assert isinstance(got, pa.Table)
