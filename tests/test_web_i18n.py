"""Every message the web templates use exists in both languages; render helpers behave."""

from __future__ import annotations

import re

import pytest
from fastapi import Request

from voxloop.web.service import LANGUAGES, WEB_DIR, label, messages, pii_marks, url_with


def test_every_template_key_has_both_languages() -> None:
    used: set[str] = set()
    for path in (WEB_DIR / "templates").rglob("*.html"):
        used |= set(re.findall(r"\bt\('([a-z0-9_.]+)'\)", path.read_text(encoding="utf-8")))
    # Keys built from a variable part in the templates and views.
    for bucket in ("day", "hour"):
        used |= {f"web.per_{bucket}", f"web.voices_per_{bucket}"}
    for level in ("province", "city", "district"):
        used.add(f"web.chart.by_{level}")
    assert len(used) > 40
    catalogue = messages()
    missing = sorted(k for k in used if k not in catalogue)
    assert missing == []
    for key in used:
        assert all(catalogue[key].get(lang) for lang in LANGUAGES), key


def test_label_falls_back_to_the_code() -> None:
    assert label("channel", "hotline_10086", "zh-CN") == "10086 热线"
    assert label("channel", "hotline_10086", "en") == "10086 hotline"
    assert label("channel", "carrier_pigeon", "en") == "carrier_pigeon"
    assert label("scenario", "MNET", "zh-CN") == "移动网络质量"
    assert label("region", None, "en") == "Unknown"


def test_pii_marks_escapes_text_and_marks_placeholders() -> None:
    html = str(pii_marks("call <PHONE> <script>x</script> & <b>"))
    assert '<span class="pii" title="masked PHONE">PHONE</span>' in html
    assert "<script>" not in html and "&amp;" in html and "&lt;b&gt;" in html
    assert str(pii_marks(None)) == ""


def test_url_with_replaces_and_drops_parameters() -> None:
    scope = {
        "type": "http",
        "path": "/voices",
        "query_string": b"channel=app&page=3&lang=en",
        "headers": [],
    }
    request = Request(scope)
    assert url_with(request, page=4) == "/voices?channel=app&page=4"
    assert url_with(request, page=None) == "/voices?channel=app"
    assert url_with(request, "/", channel=None, page=None) == "/"
    assert (
        url_with(request, q="宽带 断网")
        == "/voices?channel=app&page=3&q=%E5%AE%BD%E5%B8%A6+%E6%96%AD%E7%BD%91"
    )


def test_label_names_taxonomy_codes() -> None:
    taxonomy = pytest.importorskip("voxloop.understand.taxonomy").default_taxonomy()
    scenario = next(s for s in taxonomy.scenarios if s.subcategories)
    sub = scenario.subcategories[0]
    assert label("subcategory", sub.code, "zh-CN") == sub.zh
    assert label("subcategory", sub.code, "en") == sub.en
    assert label("subcategory", "no_such_code", "en") == "no_such_code"
