"""The hand-labelled telecom sentiment set: real hotline turns and FAQ questions.

``benchmarks/data/telecom_sentiment_labels.json`` says where each text is under
``../shared/data`` and its label (the texts are not copied here).
"""

from __future__ import annotations

import json
from pathlib import Path

LABELS = Path(__file__).resolve().parent / "data" / "telecom_sentiment_labels.json"


def load_telecom_sentiment(data: Path) -> tuple[list[str], list[str]]:
    """Return (texts, labels) of the labelled set, reading the texts from ``data``."""
    doc = json.loads(LABELS.read_text(encoding="utf-8"))
    dialogues = {
        d["id"]: d["content"]
        for d in json.loads((data / "mobilecs_examples" / "example.json").read_text("utf-8"))
    }
    faq = list(json.loads((data / "jiangsu_mobile_faq" / "qa.json").read_text("utf-8")))
    texts: list[str] = []
    labels: list[str] = []
    for item in doc["items"]:
        if item["source"].startswith("mobilecs_examples"):
            texts.append(dialogues[item["dialogue"]][item["turn"]][item["speaker"]])
        else:
            texts.append(faq[item["question_index"]])
        labels.append(item["label"])
    return texts, labels
