"""Rendering helpers shared by every domain's dashboard pages: templates, language, i18n."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

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
def taxonomy_names() -> dict[str, dict[str, tuple[str, str]]]:
    """Return ``{"scenario"|"subcategory"|"intent": {code: (zh, en)}}`` from the taxonomy."""
    try:
        from voxloop.understand.taxonomy import default_taxonomy

        taxonomy = default_taxonomy()
    except Exception:  # pragma: no cover - the understand domain is optional for pages
        return {}
    subcategories: dict[str, tuple[str, str]] = {}
    for scenario in taxonomy.scenarios:
        for sub in scenario.subcategories:
            subcategories.setdefault(sub.code, (sub.zh, sub.en))
    return {
        "scenario": {s.code: (s.zh, s.en) for s in taxonomy.scenarios},
        "subcategory": subcategories,
        "intent": {i.code: (i.zh, i.en) for i in taxonomy.intents},
    }


def label(prefix: str, value: object, lang: str) -> str:
    """Translate a code such as a channel or scenario: ``prefix.value``, else the value.

    Scenario, subcategory and intent codes missing from the locale files are named from
    the understanding taxonomy.
    """
    if value is None or value == "":
        return translate("web.unknown", lang)
    key = f"{prefix}.{value}"
    text = translate(key, lang)
    if text != key:
        return text
    names = taxonomy_names().get(prefix, {}).get(str(value))
    if names:
        return names[0] if lang == "zh-CN" else names[1]
    return str(value)


_PII = re.compile(r"&lt;([A-Z]{2,12})&gt;")


def pii_marks(text: object) -> Markup:
    """Escape ``text`` and show masked-PII placeholders (``<PHONE>``) as labelled chips."""
    escaped = str(escape("" if text is None else str(text)))
    return Markup(_PII.sub(r'<span class="pii" title="masked \1">\1</span>', escaped))


def url_with(request: Request, path: str | None = None, **changes: object) -> str:
    """Return ``path`` (default: the current path) with the query string updated.

    ``None`` or ``""`` removes a parameter; other values replace it.
    """
    params = dict(request.query_params)
    params.pop("lang", None)
    for key, value in changes.items():
        if value is None or value == "":
            params.pop(key, None)
        else:
            params[key] = str(value)
    query = urlencode(params)
    target = path if path is not None else request.url.path
    return f"{target}?{query}" if query else target


@cache
def templates() -> Jinja2Templates:
    """Return the Jinja2 environment over ``web/templates``."""
    env = Jinja2Templates(directory=str(WEB_DIR / "templates"))
    env.env.filters["pii"] = pii_marks
    return env


def render(request: Request, template: str, context: dict[str, Any]) -> HTMLResponse:
    """Render ``template`` (e.g. ``"detect/alerts.html"``) in the request's language.

    Besides ``context``, templates get ``lang``, ``t(key)``, ``label(prefix, code)``,
    ``url_with(path=None, **params)``, ``lang_urls`` and the ``pii`` filter.
    """
    lang = language(request)
    ctx = {
        "lang": lang,
        "t": lambda key: translate(key, lang),
        "label": lambda prefix, value: label(prefix, value, lang),
        "url_with": lambda path=None, **kw: url_with(request, path, **kw),
        "lang_urls": {code: url_with(request, lang=code) for code in LANGUAGES},
        "nav_path": request.url.path,
        **context,
    }
    response = templates().TemplateResponse(request, template, ctx)
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie("lang", lang, samesite="lax")
    return response
