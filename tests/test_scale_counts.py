"""The light reader Spark's workers count with: same voices as the detect stage's, fewer imports."""

from __future__ import annotations

import subprocess
import sys

from voxloop.config import Settings
from voxloop.detect import counts
from voxloop.detect import service as detect
from voxloop.ingest.schemas import RecordKind
from voxloop.ingest.service import ingest_records
from voxloop.store.service import part_files


def test_light_reader_reads_what_the_detect_stage_reads(settings: Settings) -> None:
    records = [
        {
            "id": f"c{i}",
            "source": "hotline",
            "kind": "complaint",
            "received_at": f"2026-09-0{1 + i % 3}T0{i % 9}:00:00+08:00",
            "province": "江苏",
            "city": ("南京", "苏州")[i % 2],
            "channel": "app",
            "text": f"第{i}条：宽带又断了",
            "attributes": {"scenario": ("broadband", "billing")[i % 2]},
        }
        for i in range(40)
    ]
    assert ingest_records(settings=settings, kind=RecordKind.voice, records=records).stored == 40
    files = part_files(settings, "voices")
    light = counts.read_voices(settings=settings, files=files)
    assert light.num_rows == 40
    assert light.equals(detect.read_voices(settings=settings, files=files))
    assert counts.read_voices(settings=settings, files=[]).num_rows == 0


def test_light_reader_imports_neither_the_detectors_nor_pandas() -> None:
    code = (
        "import sys, voxloop.detect.counts, voxloop.detect.series; "
        "print(sorted(m for m in ('scipy', 'pandas', 'sklearn', 'voxloop.detect.service') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
