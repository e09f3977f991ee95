"""`voxloop evaluate text` reads labelled files through the ingest readers."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.conftest import shared_file
from voxloop.errors import UnusableInputError
from voxloop.understand.evaluation import read_labelled

ROWS = [
    ("line one\nline two, with a comma", "BILL"),
    ('he said "no"', "NET"),
    ("话费多扣了", "BILL"),
    ("宽带断网", "NET"),
]


def _csv(path: Path) -> None:
    body = "".join('"{}",{}\n'.format(t.replace('"', '""'), y) for t, y in ROWS)
    data = ("text,label\n" + body).encode("utf-8")
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def test_every_ingest_format_gives_the_same_rows(tmp_path: Path) -> None:
    _csv(tmp_path / "d.csv")
    _csv(tmp_path / "d.csv.gz")
    (tmp_path / "d.jsonl").write_text(
        "".join(json.dumps({"text": t, "label": y}, ensure_ascii=False) + "\n" for t, y in ROWS),
        encoding="utf-8",
    )
    (tmp_path / "d.json").write_text(
        json.dumps([{"text": t, "label": y} for t, y in ROWS], ensure_ascii=False),
        encoding="utf-8",
    )
    table = pa.table({"text": [t for t, _ in ROWS], "label": [y for _, y in ROWS]})
    pq.write_table(table, tmp_path / "d.parquet")
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["text", "label"])
    for t, y in ROWS:
        ws.append([t, y])
    wb.save(tmp_path / "d.xlsx")
    expected = ([t for t, _ in ROWS], [y for _, y in ROWS])
    for name in ("d.csv", "d.csv.gz", "d.jsonl", "d.json", "d.parquet", "d.xlsx"):
        got = read_labelled(tmp_path / name, text_col="text", label_col="label")
        assert got == expected, name


def test_gbk_csv_and_broken_rows(tmp_path: Path) -> None:
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes("text,label\n话费多扣了,BILL\n宽带断网,NET\n".encode("gbk"))
    assert read_labelled(gbk, text_col="text", label_col="label")[0] == ["话费多扣了", "宽带断网"]
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("text,label\nok,A\ntoo,many,fields\n", encoding="utf-8")
    with pytest.raises(UnusableInputError, match="row 3"):
        read_labelled(ragged, text_col="text", label_col="label")
    empty_label = tmp_path / "e.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "label": ["X", None]}), empty_label)
    with pytest.raises(UnusableInputError, match="row 2"):
        read_labelled(empty_label, text_col="text", label_col="label")


def test_reads_the_cfpb_training_file_with_multiline_narratives() -> None:
    path = shared_file("cfpb_complaint_narratives", "train.csv.gz")
    texts, labels = read_labelled(path, text_col="narrative", label_col="product")
    assert len(texts) == len(labels) > 10_000
    assert any("\n" in t for t in texts)  # quoted multi-line narratives are kept whole
    assert len(set(labels)) >= 5 and all(labels)


def test_cli_evaluates_a_multiline_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from voxloop.cli.main import _register_domains, app

    monkeypatch.setenv("VOXLOOP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VOXLOOP_ENV", "test")
    monkeypatch.setenv("VOXLOOP_SECRET_KEY", "cli-test-secret")
    _register_domains()

    rows = [(f"bill problem {i}\nsecond line", "BILL") for i in range(10)]
    rows += [(f"network down {i}\nagain", "NET") for i in range(10)]
    body = "".join(f'"{t}",{y}\n' for t, y in rows)
    path = tmp_path / "m.csv"
    path.write_text("text,label\n" + body, encoding="utf-8")
    res = CliRunner().invoke(app, ["evaluate", "text", "--train", str(path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    assert out["n_train"] + out["n_test"] == 20 and 0.0 <= out["accuracy"] <= 1.0
