"""Optional OpenAI-compatible chat endpoint for assist prose (``VOXLOOP_ASSIST_LLM``).

``openai:URL#MODEL`` names the endpoint; the request is a plain ``POST URL/chat/completions``
in the OpenAI protocol, with ``VOXLOOP_ASSIST_LLM_KEY`` as the bearer token when set (the
key lives in the setting only, never in a file or an output). Every message is PII-masked
again right before it is sent, so only masked text leaves the machine. Any failure —
unreachable, timeout, HTTP error, an answer that is not the JSON asked for — leaves the
offline result in place and says why (``llm_note``); nothing depends on the LLM.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from voxloop.assist.summary_schemas import ConversationSummary, Turn
from voxloop.config import Settings
from voxloop.errors import ConfigError, VoxloopError
from voxloop.ingest.pii import mask_text

#: Seconds to wait for the endpoint before falling back to the template.
DEFAULT_TIMEOUT = 15.0
#: Characters of transcript sent at most (the head and the tail of long calls).
MAX_TRANSCRIPT_CHARS = 6_000


class LlmError(VoxloopError):
    """The chat endpoint could not be used: unreachable, timed out, or answered badly."""


@dataclass(frozen=True)
class LlmEndpoint:
    """Where the chat endpoint is and which model to ask."""

    url: str
    model: str


def parse_spec(spec: str) -> LlmEndpoint:
    """Read ``openai:URL#MODEL`` into an endpoint (URL up to the ``/chat/completions`` part)."""
    if not spec.startswith("openai:") or "#" not in spec:
        raise ConfigError(f"assist_llm {spec!r}: expected 'openai:URL#MODEL'")
    url, _, model = spec[len("openai:") :].rpartition("#")
    url = url.rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        raise ConfigError(f"assist_llm {spec!r}: URL must start with http:// or https://")
    if not model.strip():
        raise ConfigError(f"assist_llm {spec!r}: the model name after '#' is empty")
    return LlmEndpoint(url=url, model=model.strip())


def chat_completion(
    *,
    settings: Settings,
    messages: Sequence[dict[str, str]],
    timeout: float = DEFAULT_TIMEOUT,
    max_tokens: int = 800,
) -> str:
    """Send masked ``messages`` to the configured endpoint; return the reply's content.

    Raises
    ------
    LlmError
        When no endpoint is configured or the call fails in any way.
    """
    if not settings.assist_llm:
        raise LlmError("no assist LLM configured (VOXLOOP_ASSIST_LLM)")
    endpoint = parse_spec(settings.assist_llm)
    body = {
        "model": endpoint.model,
        "messages": [{"role": m["role"], "content": mask_text(m["content"])[0]} for m in messages],
        "temperature": 0,
        "max_tokens": max_tokens,
    }
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if settings.assist_llm_key:
        headers["Authorization"] = f"Bearer {settings.assist_llm_key}"
    request = urllib.request.Request(
        f"{endpoint.url}/chat/completions",
        data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise LlmError(f"chat endpoint answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LlmError(f"chat endpoint unreachable or too slow: {reason}") from exc
    try:
        payload: Any = json.loads(raw)
        content = payload["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise LlmError("chat endpoint reply is not an OpenAI chat completion") from exc
    if not isinstance(content, str) or not content.strip():
        raise LlmError("chat endpoint reply has no content")
    return content


def _transcript(turns: Sequence[Turn]) -> str:
    lines = [f"{'坐席' if t.speaker == 'agent' else '客户'}：{t.text}" for t in turns]
    text = "\n".join(lines)
    if len(text) <= MAX_TRANSCRIPT_CHARS:
        return text
    half = MAX_TRANSCRIPT_CHARS // 2
    return text[:half] + "\n…\n" + text[-half:]


_SYSTEM = (
    "你是电信运营商客服质检助手。根据通话记录和已抽取的结构化字段，用简体中文写一段不超过150字的"
    "工单摘要：客户诉求、坐席处理、结果、承诺的跟进。只使用记录中出现的信息，不要编造号码或金额。"
    '占位符如<PHONE>保持原样。只输出JSON对象：{"abstract": "..."}。'
)


def _abstract_from(content: str) -> str:
    text = content.strip()
    fence = re.match(r"^```(?:json)?\s*(.*?)\s*```$", text, re.S)
    if fence:
        text = fence.group(1)
    try:
        data: Any = json.loads(text)
    except ValueError as exc:
        raise LlmError("chat reply is not the JSON object asked for") from exc
    abstract = data.get("abstract") if isinstance(data, dict) else None
    if not isinstance(abstract, str) or not abstract.strip():
        raise LlmError("chat reply lacks a non-empty 'abstract'")
    if len(abstract) > 2_000:
        raise LlmError("chat reply 'abstract' is longer than 2,000 characters")
    return abstract.strip()


def refine_summary(
    *,
    settings: Settings,
    summary: ConversationSummary,
    turns: Sequence[Turn],
    timeout: float = DEFAULT_TIMEOUT,
) -> ConversationSummary:
    """Ask the LLM for the prose abstract; keep the template one (and say why) on failure."""
    fields = summary.model_dump(
        include={"intent", "scenario", "outcome", "sentiment", "headline"}, mode="json"
    )
    fields["actions"] = [f"{a.label}:{a.status}" for a in summary.actions]
    fields["follow_ups"] = [f.text for f in summary.follow_ups]
    messages = [
        {"role": "system", "content": _SYSTEM},
        {
            "role": "user",
            "content": "结构化字段："
            + json.dumps(fields, ensure_ascii=False)
            + "\n通话记录：\n"
            + _transcript(turns),
        },
    ]
    try:
        abstract = _abstract_from(
            chat_completion(settings=settings, messages=messages, timeout=timeout)
        )
    except LlmError as exc:
        return summary.model_copy(update={"source": "template", "llm_note": str(exc)})
    # The model may echo or invent identifiers: mask its text as well.
    return summary.model_copy(
        update={"abstract": mask_text(abstract)[0], "source": "llm", "llm_note": None}
    )
