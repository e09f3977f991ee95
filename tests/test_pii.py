"""PII masking: typed placeholders, checksum validation, Arrow contract, measured P/R."""

from __future__ import annotations

import csv

import pyarrow as pa
import pytest

from tests.conftest import shared_file
from voxloop.ingest.pii import COUNTS_TYPE, id_checksum_ok, luhn_ok, mask_array, mask_text
from voxloop.understand import pii_eval


@pytest.mark.parametrize(
    ("text", "masked", "kind"),
    [
        ("我的手机13812345678请回电", "我的手机<PHONE>请回电", "PHONE"),
        ("电话 +86 139-1234-5678。", "电话 <PHONE>。", "PHONE"),
        ("身份证11010519491231002X", "身份证<ID>", "ID"),
        ("卡号6222 0212 3456 7894", "卡号<CARD>", "CARD"),
        ("mail me: a.b-c@mail.example.cn thanks", "mail me: <EMAIL> thanks", "EMAIL"),
        ("座机010-62345678", "座机<LANDLINE>", "LANDLINE"),
        ("车牌粤BD12345被拖", "车牌<PLATE>被拖", "PLATE"),
        ("寄到江苏省南京市鼓楼区中山路12号3栋501室谢谢", "寄到<ADDRESS>谢谢", "ADDRESS"),
        ("call (415) 555-0134 now", "call <PHONE> now", "PHONE"),
    ],
)
def test_mask_text_replaces_each_type(text: str, masked: str, kind: str) -> None:
    out, counts = mask_text(text)
    assert out == masked
    assert counts == {kind: 1}


def test_invalid_checksums_and_plain_numbers_stay() -> None:
    # Wrong ID check digit, wrong Luhn digit, order number glued to letters, an amount.
    for text in ("证件110105194912310021", "卡6222021234567893", "订单SN13812345678", "共100元"):
        assert mask_text(text) == (text, {})
    assert id_checksum_ok("11010519491231002X")
    assert not id_checksum_ok("110105194912310021")
    assert luhn_ok("4539578763621486")
    assert not luhn_ok("4539578763621487")


def test_mask_array_contract() -> None:
    texts = pa.array(["无隐私", None, "打13812345678或13912345678", "x@y.com"])
    masked, counts = mask_array(texts)
    assert masked.type == pa.string()
    assert counts.type == COUNTS_TYPE
    assert masked.to_pylist() == ["无隐私", None, "打<PHONE>或<PHONE>", "<EMAIL>"]
    assert counts.to_pylist() == [[], None, [("PHONE", 2)], [("EMAIL", 1)]]
    chunked = pa.chunked_array([texts[:2], texts[2:]])
    assert mask_array(chunked)[0].to_pylist() == masked.to_pylist()
    with pytest.raises(TypeError, match="string array"):
        mask_array(pa.array([1, 2]))


def test_measured_precision_recall_on_real_sentences() -> None:
    rows = csv.DictReader(shared_file("waimai_10k", "train.csv").open(encoding="utf-8"))
    sentences = [r["review"] for _, r in zip(range(600), rows, strict=False)]
    samples = pii_eval.make_samples(sentences, english=False, n=700, seed=11)
    report = pii_eval.score(samples)
    for kind, ts in report.per_type.items():
        if ts.tp + ts.fn:
            assert ts.recall >= 0.95, (kind, ts)
            assert ts.precision >= 0.95, (kind, ts)
    assert sum(pii_eval.clean_false_positives(sentences).values()) <= 2
