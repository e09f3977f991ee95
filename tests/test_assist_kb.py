"""Knowledge base: import with versions, hybrid retrieval on the real Jiangsu FAQ, answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import admin_client, shared_file
from voxloop.assist.kb import answer_question, current_entries, import_kb, parse_kb_file
from voxloop.assist.schemas import AnswerRequest
from voxloop.config import Settings
from voxloop.errors import UnusableInputError

# Paraphrases written for this test (customers' wording), with the FAQ question they mean.
PARAPHRASES = {
    "哪个套餐流量最划算": "流量比较划算的套餐",
    "密码忘了怎么办": "忘记密码了该怎么办",
    "最便宜的套餐是哪个": "办理最便宜的套餐",
    "我想退掉咪咕爱奇艺的流量包": "取消咪咕爱奇艺流量包",
    "免流的应用为什么还扣了流量": "为什么我免流范围内的APP没有免流",
    "任我用超过阈值以后还要收钱吗": "任我用套餐流量达到阀值后是否收费",
}


def test_jiangsu_faq_imports_and_answers_paraphrases(settings: Settings) -> None:
    faq = shared_file("jiangsu_mobile_faq", "qa.json")
    first = import_kb(settings=settings, path=faq)
    assert first.read == first.added == len(json.loads(faq.read_text(encoding="utf-8")))
    again = import_kb(settings=settings, path=faq)
    assert (again.added, again.updated, again.unchanged) == (0, 0, first.read)

    hits = 0
    for question, meant in PARAPHRASES.items():
        res = answer_question(settings=settings, request=AnswerRequest(question=question))
        top = res.candidates[0].question
        hits += top == meant
        if res.known:
            # An answer always quotes the entry it comes from.
            entry = next(e for e in current_entries(settings) if e.entry_id == res.entry_id)
            assert res.answer == entry.answer and res.version == entry.version == 1
    assert hits >= 5, f"hit@1 {hits}/{len(PARAPHRASES)}"

    unknown = answer_question(settings=settings, request=AnswerRequest(question="今天天气怎么样"))
    assert unknown.known is False and unknown.routed_to_human and unknown.answer is None


def test_changed_entries_get_a_new_version_and_scope_applies(
    settings: Settings, tmp_path: Path
) -> None:
    csv_v1 = tmp_path / "faq.csv"
    csv_v1.write_text(
        "id,question,answer,region,valid_to\n"
        "plan-8,最便宜的套餐,8元套餐含30分钟通话,,\n"
        "js-broadband,宽带报修电话,江苏宽带报修请拨10086按4,江苏,\n"
        "old-promo,春节流量包活动,已结束的活动,,2020-02-28\n",
        encoding="utf-8",
    )
    assert import_kb(settings=settings, path=csv_v1).added == 3
    csv_v1.write_text(
        "id,question,answer\nplan-8,最便宜的套餐,8元套餐含30分钟通话和100MB流量\n",
        encoding="utf-8",
    )
    res = import_kb(settings=settings, path=csv_v1)
    assert (res.added, res.updated) == (0, 1)
    latest = {e.entry_id: e for e in current_entries(settings)}
    assert latest["plan-8"].version == 2 and "100MB" in latest["plan-8"].answer

    ask = AnswerRequest(question="宽带报修电话是多少", region="广东")
    outside = answer_question(settings=settings, request=ask)
    assert all(c.entry_id != "js-broadband" for c in outside.candidates)
    inside = answer_question(
        settings=settings, request=AnswerRequest(question="宽带报修电话是多少", region="江苏/南京")
    )
    assert inside.candidates[0].entry_id == "js-broadband"
    expired = answer_question(settings=settings, request=AnswerRequest(question="春节流量包活动"))
    assert all(c.entry_id != "old-promo" for c in expired.candidates)


def test_markdown_faq_and_bad_files_name_the_place(tmp_path: Path) -> None:
    md = tmp_path / "faq.md"
    md.write_text("# 常见问题\n\n## 如何查话费\n发送 CXHF 到 10086。\n\n## 如何改套餐\n", "utf-8")
    with pytest.raises(UnusableInputError, match=r"line 6: field 'answer' is empty"):
        parse_kb_file(md)
    bad = tmp_path / "faq.csv"
    bad.write_text("question,reply\n如何查话费,发短信\n", encoding="utf-8")
    with pytest.raises(UnusableInputError, match=r"missing column\(s\) \['answer'\]"):
        parse_kb_file(bad)
    dates = tmp_path / "dated.json"
    dates.write_text(json.dumps([{"question": "q", "answer": "a", "valid_to": "soon"}]), "utf-8")
    with pytest.raises(UnusableInputError, match=r"entry 1: field 'valid_to' is not a date"):
        parse_kb_file(dates)


def test_answer_api_quotes_its_source_and_refuses_bad_input(
    settings: Settings, tmp_path: Path
) -> None:
    from voxloop.api.app import create_app

    faq = tmp_path / "faq.json"
    faq.write_text(json.dumps({"忘记密码了该怎么办": "可通过短信重置服务密码。"}), "utf-8")
    import_kb(settings=settings, path=faq)
    client = admin_client(create_app(settings))
    res = client.post("/api/v1/assist/answer", json={"question": "密码忘了怎么办"})
    assert res.status_code == 200
    body = res.json()
    assert body["known"] and body["version"] == 1 and body["entry_id"].startswith("kb-")
    assert body["answer"] == "可通过短信重置服务密码。"
    empty = client.post("/api/v1/assist/answer", json={"question": ""})
    assert empty.status_code == 422 and "question" in empty.text
    huge = client.post("/api/v1/assist/answer", json={"question": "话费" * 600_000})
    assert huge.status_code == 422 and "question" in huge.text
