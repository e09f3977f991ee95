"""Rendering helpers shared by every domain's dashboard pages: templates, language, i18n."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

WEB_DIR = Path(__file__).resolve().parent
LANGUAGES = ("zh-CN", "en")


@cache
def messages() -> dict[str, dict[str, str]]:
    """Load every ``locale/*.yaml`` file: ``{key: {"zh-CN": ..., "en": ...}}``."""
    merged: dict[str, dict[str, str]] = {}
    for path in sorted((WEB_DIR / "locale").glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        merged.update(data)
    return merged


def language(request: Request) -> str:
    """Pick the UI language: ``?lang=`` then the ``lang`` cookie, else zh-CN."""
    lang = request.query_params.get("lang") or request.cookies.get("lang") or "zh-CN"
    return lang if lang in LANGUAGES else "zh-CN"


def translate(key: str, lang: str) -> str:
    """Return the message ``key`` in ``lang`` (the key itself when missing)."""
    entry = messages().get(key)
    if not entry:
        return key
    return entry.get(lang) or entry.get("en") or key


@cache
def templates() -> Jinja2Templates:
    """Return the Jinja2 environment over ``web/templates``."""
    return Jinja2Templates(directory=str(WEB_DIR / "templates"))


def render(request: Request, template: str, context: dict[str, Any]) -> HTMLResponse:
    """Render ``template`` (e.g. ``"detect/alerts.html"``) in the request's language."""
    lang = language(request)
    ctx = {"lang": lang, "t": lambda key: translate(key, lang), **context}
    response = templates().TemplateResponse(request, template, ctx)
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie("lang", lang, samesite="lax")
    return response
