"""Shared check suite over every registered understanding model, plus taxonomy and evaluation."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from voxloop.errors import ConfigError, UnusableInputError
from voxloop.understand.estimators import REGISTRY
from voxloop.understand.evaluation import evaluate_cv, read_labelled, task_model
from voxloop.understand.lexicon import EMOTIONS, SENTIMENTS
from voxloop.understand.taxonomy import SCENARIO_CODES, default_taxonomy, load_taxonomy

# Importing the lexicon module registers its models.
assert "lexicon_sentiment" in REGISTRY

TEXTS = [
    "话费莫名其妙多扣了五十块",
    "无缘无故扣了我二十元话费",
    "家里宽带断网两天了",
    "宽带一直掉线没人修",
    "客服态度太差了气死我了",
    "10086转不了人工",
    "I was charged twice this month",
    "my internet has been down for days",
    "非常满意谢谢你们",
    "服务很好很专业",
    "害怕个人信息被泄露",
    "竟然没想到这么快就解决了",
]
LABELS = ["BILL", "BILL", "HBB", "HBB", "SVC", "SVC", "BILL", "HBB", "SVC", "SVC", "SVC", "HBB"]


# Importing the plug-in module registers its models too, so every run checks the same set.
import voxloop.understand.encoders  # noqa: E402,F401


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registered_model_contract(name: str, tmp_path: Path) -> None:
    cls = REGISTRY[name]
    needs = {
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.default is inspect.Parameter.empty and p.name != "self"
    }
    if needs == {"encoder"}:
        from tests.test_understand_encoders import HashEncoder

        model = cls(encoder=HashEncoder())
    else:
        model = cls()
    # __init__ only stores parameters: no learned state before fit.
    assert not [k for k in vars(model) if k.endswith("_")]
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    assert set(model.get_params()) == set(params)
    assert model.fit(TEXTS, LABELS) is model
    learned = [k for k in vars(model) if k.endswith("_")]
    assert learned and "classes_" in learned
    pred = model.predict(TEXTS)
    proba = model.predict_proba(TEXTS)
    assert len(pred) == len(TEXTS)
    assert proba.shape == (len(TEXTS), len(model.classes_))
    assert np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert set(np.asarray(pred).tolist()) <= set(model.classes_.tolist())
    # predict agrees with the arg-max of predict_proba
    assert (model.classes_[np.argmax(proba, axis=1)] == pred).all()
    path = model.save(tmp_path / f"{name}.pkl")
    loaded = cls.load(path)
    assert (loaded.predict(TEXTS) == pred).all()
    np.testing.assert_allclose(loaded.predict_proba(TEXTS), proba)
    other = next(c for n, c in REGISTRY.items() if c is not cls)
    with pytest.raises(TypeError, match="does not hold"):
        other.load(path)


def test_text_classifier_learns_and_rejects_bad_input() -> None:
    model = REGISTRY["text_svm"]().fit(TEXTS * 3, LABELS * 3)
    assert model.predict(["这个月又多扣了我三十块钱话费"])[0] == "BILL"
    assert model.predict(["宽带断网了"])[0] == "HBB"
    with pytest.raises(TypeError, match="row 1"):
        model.predict(["ok", None])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="two distinct labels"):
        REGISTRY["text_svm"]().fit(["a", "b"], ["x", "x"])


def test_lexicon_models_read_chinese_and_english() -> None:
    sent = REGISTRY["lexicon_sentiment"]().fit()
    assert list(sent.classes_) == list(SENTIMENTS)
    pred = sent.predict(["客服态度太差了", "非常满意，谢谢", "不满意", "还不错", "请问怎么改套餐"])
    assert pred.tolist() == ["negative", "positive", "negative", "positive", "neutral"]
    assert sent.predict(["terrible service, I am angry"])[0] == "negative"
    emo = REGISTRY["lexicon_emotion"]().fit()
    assert list(emo.classes_) == list(EMOTIONS)
    out = emo.predict(["气死我了太过分", "我很担心信息被泄露", "太好了谢谢", "今天下雨"])
    assert out.tolist() == ["anger", "fear", "joy", "neutral"]


def test_default_taxonomy_has_contract_codes() -> None:
    tax = default_taxonomy()
    assert tuple(s.code for s in tax.scenarios) == SCENARIO_CODES
    texts, codes, subs = tax.examples()
    assert len(texts) == len(codes) == len(subs) >= 14 * 8
    for s in tax.scenarios:
        assert s.zh and s.en and len(s.subcategories) >= 3
        for sub in s.subcategories:
            assert len(sub.examples) >= 3, (s.code, sub.code)


def test_operator_taxonomy_extends_or_replaces(tmp_path: Path) -> None:
    extra = tmp_path / "op.yaml"
    extra.write_text(
        """
name: operator
version: "op-1"
scenarios:
  - code: BILL
    zh: 资费
    en: Charges
    rules: [{id: op-roaming, pattern: "漫游费", priority: 20}]
    subcategories:
      - {code: roaming, zh: 漫游, en: Roaming, examples: [漫游费太贵, 出国漫游扣了好多钱]}
  - code: IOT
    zh: 物联网
    en: IoT
    subcategories:
      - {code: card, zh: 物联卡, en: IoT card, examples: [物联卡停机了, 物联网卡流量没了]}
""",
        encoding="utf-8",
    )
    tax = load_taxonomy(extra)
    assert tax.version == "op-1"
    assert [s.code for s in tax.scenarios][-1] == "IOT"
    bill = tax.scenario("BILL")
    assert bill.zh == "资费" and "roaming" in [c.code for c in bill.subcategories]
    assert tax.rules()[0][0].id == "op-roaming"
    assert len(bill.subcategories) == 5
    replaced = load_taxonomy(extra, mode="replace")
    assert [s.code for s in replaced.scenarios] == ["BILL", "IOT"]


def test_invalid_taxonomy_names_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        'name: x\nversion: "1"\nscenarios:\n  - {code: A, zh: a, en: a, '
        'rules: [{id: r, pattern: "(unclosed"}]}\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="invalid regex"):
        load_taxonomy(bad, mode="replace")
    with pytest.raises(ConfigError, match="mode"):
        load_taxonomy(bad, mode="merge")


def test_read_labelled_and_cv(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    rows = "\n".join(f'"{t}",{y}' for t, y in zip(TEXTS * 2, LABELS * 2, strict=True))
    path.write_text("text,label\n" + rows + "\n", encoding="utf-8")
    texts, labels = read_labelled(path, text_col="text", label_col="label")
    assert len(texts) == 24 and labels[0] == "BILL"
    res = evaluate_cv((texts, labels), folds=2)
    assert 0.0 <= res["accuracy"] <= 1.0 and res["folds"] == 2
    with pytest.raises(UnusableInputError, match="no column 'body'"):
        read_labelled(path, text_col="body", label_col="label")
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nhello,\n", encoding="utf-8")
    with pytest.raises(UnusableInputError, match="row 1"):
        read_labelled(bad, text_col="text", label_col="label")
    with pytest.raises(UnusableInputError, match="unknown task"):
        task_model("topic")


def test_urgency_rules_and_triggers() -> None:
    import pyarrow as pa

    from voxloop.understand.urgency import assess

    texts = pa.array(
        [
            "再不解决我就去工信部投诉，还要找媒体曝光",
            "家里老人一个人住，宽带断了很着急",
            "I will sue you and talk to the press",
            "打12315举报",
            "请问怎么查话费",
            None,
        ]
    )
    res = assess(texts, prior_contacts=np.array([0, 3, 0, 0, 0, 0]))
    assert res.escalation_risk.tolist() == [True, True, True, True, False, False]
    assert set(res.triggers[0]) == {"工信部", "媒体", "曝光", "再不解决"}
    assert res.triggers[1][0] == "repeat_contact:3" and "老人" in res.triggers[1]
    assert set(res.triggers[2]) == {"sue", "press"}
    assert res.triggers[3] == ["12315"]
    assert res.urgency[4] == 0.0 and res.triggers[4] == [] and res.triggers[5] == []
    assert res.urgency[0] > res.urgency[3] > 0.0
    assert np.all((res.urgency >= 0) & (res.urgency <= 1))
    # A number that merely contains 12315 is no consumer-body threat.
    assert assess(pa.array(["订单号9123156"])).triggers == [[]]


def test_agent_turns_do_not_count_as_customer_mood() -> None:
    import pyarrow as pa

    from voxloop.understand.lexicon import customer_side

    transcript = "坐席：您好，很高兴为您服务\n客户：又断网了，凭什么收钱\n坐席：非常抱歉"
    assert customer_side(pa.array([transcript, "客服态度差"])).to_pylist() == [
        "客户：又断网了，凭什么收钱\n",
        "客服态度差",
    ]
    sent = REGISTRY["lexicon_sentiment"]().fit()
    emo = REGISTRY["lexicon_emotion"]().fit()
    assert sent.predict([transcript])[0] == "negative"
    assert emo.predict([transcript])[0] != "joy"


def test_class_bias_raises_macro_f1_on_held_out_scores() -> None:
    from voxloop.understand.estimators import fit_class_bias

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [400, 80, 20])
    scores = rng.normal(size=(len(y), 3))
    scores[np.arange(len(y)), y] += 1.0
    # A shifted-down minority column: the plain arg-max rarely predicts class 2.
    scores[:, 2] -= 1.5
    bias = fit_class_bias(scores, y, metric="macro_f1")
    assert bias.shape == (3,) and np.any(bias != 0)

    def macro(s: np.ndarray) -> float:
        from sklearn.metrics import f1_score

        return float(f1_score(y, np.argmax(s, axis=1), average="macro"))

    assert macro(scores + bias) > macro(scores) + 0.02
    with pytest.raises(ValueError, match="metric"):
        fit_class_bias(scores, y, metric="auc")


def test_text_classifier_with_class_bias_keeps_contract() -> None:
    model = REGISTRY["text_svm"](bias_metric="macro_f1").fit(TEXTS * 3, LABELS * 3)
    assert model.class_bias_.shape == (len(model.classes_),)
    proba = model.predict_proba(TEXTS)
    assert (model.classes_[np.argmax(proba, axis=1)] == model.predict(TEXTS)).all()
    assert task_model("emotion").bias_metric == "macro_f1"


def test_domain_adaptation_learns_what_does_not_transfer(tmp_path: Path) -> None:
    from voxloop.understand.estimators import TextClassifier

    rng = np.random.default_rng(0)
    filler = ["the", "order", "today", "again", "service", "app", "store"]

    def rows(n: int, flip: bool) -> tuple[list[str], list[str]]:
        texts, labels = [], []
        for _ in range(n):
            good = bool(rng.random() < 0.5)
            # "quiet" praises in the source domain (hotels) and complains in the target
            # (a mobile network); "great"/"awful" mean the same in both.
            cue = "great" if good else "awful"
            if rng.random() < 0.5:
                cue = "quiet" if good != flip else "loud"
            words = [cue, *rng.choice(filler, size=4)]
            texts.append(" ".join(words))
            labels.append("pos" if good else "neg")
        return texts, labels

    src_x, src_y = rows(600, flip=False)
    tgt_x, tgt_y = rows(80, flip=True)
    test_x = ["quiet today", "loud app again", "great store", "awful service"]
    want = ["neg", "pos", "pos", "neg"]
    pooled = TextClassifier(char_ngram=None).fit(src_x + tgt_x, src_y + tgt_y)
    adapted = TextClassifier(char_ngram=None, target_domain="network").fit(
        src_x + tgt_x, src_y + tgt_y, domains=["hotel"] * 600 + ["network"] * 80
    )
    assert list(adapted.predict(test_x)) == want
    assert list(pooled.predict(test_x)[:2]) != want[:2]  # pooled data drowns the target
    # The shared and target blocks are folded into one: same size as an unadapted model.
    assert adapted.svm_.coef_.shape == pooled.svm_.coef_.shape
    again = TextClassifier.load(adapted.save(tmp_path / "m.pkl"))
    assert np.allclose(again.predict_proba(test_x), adapted.predict_proba(test_x))
    with pytest.raises(ValueError, match="target_domain"):
        TextClassifier().fit(src_x, src_y, domains=["hotel"] * 600)
    with pytest.raises(ValueError, match="no training row"):
        TextClassifier(target_domain="x").fit(src_x, src_y, domains=["hotel"] * 600)
