"""Optional LLM path against a real local HTTP server that speaks the OpenAI chat protocol."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from voxloop.assist.llm import LlmError, chat_completion, parse_spec
from voxloop.assist.summary import summarize
from voxloop.config import Settings
from voxloop.errors import ConfigError

CALL = (
    "坐席：您好 客户：我的号码13812345678这个月被多扣了三十元，邮箱zhang.san@example.com "
    "坐席：我帮您查询一下，已为您退订，三十元会在24小时内返还 客户：好的谢谢"
)


@dataclass
class Recorder:
    """What the server received, and what it should answer next."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    status: int = 200
    content: str = json.dumps({"abstract": "客户反映多扣三十元，坐席已退订并承诺24小时内返还。"})
    raw: bytes | None = None
    delay: float = 0.0
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def server() -> Iterator[tuple[str, Recorder]]:
    """A real ThreadingHTTPServer on 127.0.0.1 (random port) answering /chat/completions."""
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            rec.paths.append(self.path)
            rec.headers.append(dict(self.headers.items()))
            rec.bodies.append(json.loads(self.rfile.read(length)))
            if self.path != "/v1/chat/completions":
                self.send_response(404)
                self.end_headers()
                return
            if rec.delay:
                rec.release.wait(rec.delay)
            reply = (
                rec.raw
                or json.dumps(
                    {
                        "id": "cmpl-1",
                        "object": "chat.completion",
                        "model": rec.bodies[-1]["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": rec.content},
                                "finish_reason": "stop",
                            }
                        ],
                    }
                ).encode()
            )
            self.send_response(rec.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *_args: Any) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", rec
    finally:
        rec.release.set()
        httpd.shutdown()
        httpd.server_close()


def _settings(tmp_path: Path, url: str, key: str | None = "sk-test-secret") -> Settings:
    return Settings(
        home=tmp_path / "home",
        env="test",
        secret_key="test-secret-key",
        assist_llm=f"openai:{url}#qwen-test",
        assist_llm_key=key,
    )


def test_llm_abstract_is_used_and_only_masked_text_is_sent(
    server: tuple[str, Recorder], tmp_path: Path
) -> None:
    url, rec = server
    settings = _settings(tmp_path, url)
    summary = summarize(settings=settings, text=CALL)
    assert summary.source == "llm" and summary.llm_note is None
    assert summary.abstract.startswith("客户反映多扣三十元")
    assert rec.paths == ["/v1/chat/completions"]
    body = rec.bodies[0]
    assert body["model"] == "qwen-test" and body["messages"][0]["role"] == "system"
    sent = json.dumps(body, ensure_ascii=False)
    assert "13812345678" not in sent and "zhang.san@example.com" not in sent
    assert "<PHONE>" in sent and "<EMAIL>" in sent
    assert rec.headers[0]["Authorization"] == "Bearer sk-test-secret"
    # The key is a setting only: never part of the summary.
    assert "sk-test-secret" not in summary.model_dump_json()
    # Structured fields do not depend on the LLM.
    offline = summarize(settings=settings, text=CALL, use_llm=False)
    assert offline.source == "template" and len(rec.bodies) == 1
    assert offline.model_dump(exclude={"abstract", "source", "llm_note"}) == summary.model_dump(
        exclude={"abstract", "source", "llm_note"}
    )


def test_no_key_sends_no_authorization(server: tuple[str, Recorder], tmp_path: Path) -> None:
    url, rec = server
    summarize(settings=_settings(tmp_path, url, key=None), text=CALL)
    assert "Authorization" not in rec.headers[0]


@pytest.mark.parametrize(
    ("status", "content", "raw", "note"),
    [
        (500, "x", None, "HTTP 500"),
        (200, "这不是JSON", None, "not the JSON"),
        (200, json.dumps({"summary": "wrong key"}), None, "abstract"),
        (200, "x", b"<html>gateway</html>", "not an OpenAI chat completion"),
    ],
)
def test_bad_answers_fall_back_to_the_template(
    server: tuple[str, Recorder],
    tmp_path: Path,
    status: int,
    content: str,
    raw: bytes | None,
    note: str,
) -> None:
    url, rec = server
    rec.status, rec.content, rec.raw = status, content, raw
    summary = summarize(settings=_settings(tmp_path, url), text=CALL)
    assert summary.source == "template"
    assert summary.llm_note is not None and note in summary.llm_note
    assert summary.abstract.startswith("客户诉求：")


def test_unreachable_endpoint_falls_back(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on the port now: the connection is refused.
    summary = summarize(settings=_settings(tmp_path, f"http://127.0.0.1:{port}/v1"), text=CALL)
    assert summary.source == "template" and "unreachable" in (summary.llm_note or "")


def test_slow_endpoint_times_out(server: tuple[str, Recorder], tmp_path: Path) -> None:
    from voxloop.assist.llm import refine_summary
    from voxloop.assist.summary import parse_transcript

    url, rec = server
    rec.delay = 5.0  # the server answers only after 5 s; the client waits 0.3 s
    settings = _settings(tmp_path, url)
    with pytest.raises(LlmError, match="too slow"):
        chat_completion(
            settings=settings, messages=[{"role": "user", "content": "hi"}], timeout=0.3
        )
    offline = summarize(settings=settings, text=CALL, use_llm=False)
    slow = refine_summary(
        settings=settings, summary=offline, turns=parse_transcript(CALL), timeout=0.3
    )
    assert slow.source == "template" and "too slow" in (slow.llm_note or "")
    assert slow.abstract == offline.abstract


def test_spec_errors_name_the_problem() -> None:
    assert parse_spec("openai:http://h:1/v1/#m").url == "http://h:1/v1"
    with pytest.raises(ConfigError, match="http"):
        parse_spec("openai:ftp://h/v1#m")
    with pytest.raises(ConfigError, match="model"):
        parse_spec("openai:http://h/v1# ")
    with pytest.raises(LlmError, match="no assist LLM"):
        chat_completion(
            settings=Settings(env="test", secret_key="k"),
            messages=[{"role": "user", "content": ""}],
        )
