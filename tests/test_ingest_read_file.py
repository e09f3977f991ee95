"""The one file reader every domain uses: format dispatch, whole-file text tables, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voxloop.analyze.design import read_table
from voxloop.errors import UnusableInputError
from voxloop.ingest.readers import read_file, read_text_table


def test_read_text_table_reads_every_format_alike(tmp_path: Path) -> None:
    rows = [{"text": "网速慢\n晚上更慢", "label": "network"}, {"text": "扣费", "label": "billing"}]
    csv_path = tmp_path / "a.csv"
    csv_path.write_text('text,label\n"网速慢\n晚上更慢",network\n扣费,billing\n', encoding="gbk")
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    array = tmp_path / "a.json"
    array.write_text(json.dumps(rows, ensure_ascii=False))
    for path in (csv_path, jsonl, array):
        assert read_text_table(path).to_pylist() == rows, path.name
    assert read_text_table(jsonl, columns=["label"], limit=1).to_pylist() == [{"label": "network"}]


def test_read_text_table_names_the_row_and_the_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a"}\n{"text": \n')
    with pytest.raises(UnusableInputError, match="row 2 cannot be parsed: invalid JSON"):
        read_text_table(path)
    good = tmp_path / "good.csv"
    good.write_text("text\nx\n")
    with pytest.raises(UnusableInputError, match="no column 'label'; columns are text"):
        read_text_table(good, columns=["text", "label"])
    with pytest.raises(UnusableInputError, match="no such file"):
        list(read_file(tmp_path / "missing.csv", batch_size=10))


def test_analysis_frames_come_from_the_ingest_reader(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("age,plan,churn\n31,,yes\n 40 ,A,no\n")
    frame = read_table(str(path))
    assert frame["plan"].isna().tolist() == [True, False]  # empty cells are missing
    assert frame["age"].tolist() == ["31", " 40 "]  # text; the encoder parses numbers
