"""Rendering helpers shared by every domain's dashboard pages: templates, language, i18n."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

import yaml
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from voxloop.errors import PermissionDeniedError, UnusableInputError
from voxloop.web.schemas import FILTER_PARAMS, PageFilters, parse_query

if TYPE_CHECKING:
    from voxloop.act.access import Principal

WEB_DIR = Path(__file__).resolve().parent
LANGUAGES = ("zh-CN", "en")
F = TypeVar("F", bound=PageFilters)
#: Query parameters that never travel as hidden fields of the filter bar.
_NOT_CARRIED = {*FILTER_PARAMS, "page", "format", "table", "lang"}


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


def taxonomy_names() -> dict[str, dict[str, tuple[str, str]]]:
    """Return ``{"scenario"|"subcategory"|"intent": {code: (zh, en)}}`` from the taxonomy."""
    from voxloop.understand.taxonomy import code_names

    try:
        return code_names()
    except Exception:  # pragma: no cover - a broken taxonomy file must not take pages down
        return {}


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


def scoped_params(request: Request, principal: Principal | None) -> dict[str, str]:
    """Return the query parameters with the region pinned to ``principal``'s scope.

    A region parameter outside the scope raises ``PermissionDeniedError`` (403); an empty
    one is filled with the scope, so every query of the page stays inside it.
    """
    query = dict(request.query_params)
    if principal is None:
        return query
    for name, scope in (("province", principal.province), ("city", principal.city)):
        if scope is None:
            continue
        if query.get(name, "").strip() not in ("", scope):
            raise PermissionDeniedError(f"{name} {query[name]!r} is outside your region scope")
        query[name] = scope
    return query


def request_filters(
    request: Request,
    principal: Principal | None,
    model: type[F] = PageFilters,  # type: ignore[assignment]
) -> F:
    """Return the filter bar's values of ``request`` as ``model``, pinned to the region scope.

    Every page reads the bar with this: ``from``, ``to`` (local calendar days),
    ``province``, ``city``, ``district``, ``channel``, ``scenario``, ``sentiment``.
    Raises ``PermissionDeniedError`` for a region outside the caller's scope and
    ``UnusableInputError`` (naming the parameter) for a value that is not valid.
    """
    filters: F = parse_query(model, scoped_params(request, principal))
    return filters


def page_principal(request: Request) -> Principal | None:
    """Return the signed-in caller of a page (token, session cookie or dev mode), if any."""
    if hasattr(request.state, "voxloop_principal"):
        known: Principal | None = request.state.voxloop_principal
        return known
    from voxloop.act.access import SESSION_COOKIE, request_principal

    principal: Principal | None = None
    maker = getattr(request.app.state, "sessionmaker", None)
    settings = getattr(request.app.state, "settings", None)
    if maker is not None and settings is not None:
        try:
            with maker() as session:
                principal = request_principal(
                    session=session,
                    secret_key=settings.secret_key,
                    dev_mode=settings.env == "dev",
                    authorization=request.headers.get("authorization"),
                    cookie=request.cookies.get(SESSION_COOKIE),
                )
        except Exception:  # an invalid credential: the page itself already answered 401
            principal = None
    request.state.voxloop_principal = principal
    return principal


def filter_bar(
    request: Request,
    principal: Principal | None,
    *,
    action: str | None = None,
    extra: tuple[str, ...] = (),
) -> dict[str, Any] | None:
    """Return what the filter bar needs: current values, region cascade options, hidden fields.

    The values come from the query string (an invalid one is shown empty; the page names
    the error), the region options from the lake, restricted to ``principal``'s scope.
    ``extra`` names page-specific fields the page renders inside the bar's form.
    """
    if principal is None:
        return None
    from voxloop.web.queries import facets

    values: PageFilters
    try:
        values = request_filters(request, principal)
    except (UnusableInputError, PermissionDeniedError):
        values = PageFilters(province=principal.province, city=principal.city)
    settings = request.app.state.settings
    try:
        found = facets(settings=settings, province=values.province, city=values.city, kinds=False)
    except Exception:  # a lake that cannot be read must not take every page down
        from voxloop.web.schemas import Facets

        found = Facets()
    provinces = [principal.province] if principal.province else found.provinces
    cities = [principal.city] if principal.city else found.cities
    hidden = [
        (k, v) for k, v in request.query_params.items() if k not in _NOT_CARRIED and k not in extra
    ]
    return {
        "values": values,
        "action": action if action is not None else request.url.path,
        "provinces": provinces,
        "cities": cities,
        "districts": found.districts,
        "channels": found.channels,
        "scenarios": found.scenarios,
        "locked": {"province": principal.province is not None, "city": principal.city is not None},
        "hidden": hidden,
        "active": bool(values.query()),
    }


def render(request: Request, template: str, context: dict[str, Any]) -> HTMLResponse:
    """Render ``template`` (e.g. ``"detect/alerts.html"``) in the request's language.

    Besides ``context``, templates get ``lang``, ``t(key)``, ``label(prefix, code)``,
    ``url_with(path=None, **params)``, ``export_url(table, fmt)``, ``lang_urls``,
    ``title_en(problem)`` (see ``problem_title_en``; ``None`` unless English), the
    ``pii`` filter and ``bar`` (the filter bar shown on every page to a signed-in caller;
    pass ``bar`` in ``context`` to change it, or ``None`` to hide it).
    """
    lang = language(request)
    if "bar" not in context:
        context = {**context, "bar": filter_bar(request, page_principal(request))}
    ctx = {
        "lang": lang,
        "t": lambda key: translate(key, lang),
        "label": lambda prefix, value: label(prefix, value, lang),
        "url_with": lambda path=None, **kw: url_with(request, path, **kw),
        "export_url": lambda table, fmt: url_with(
            request, None, format=fmt, table=table, page=None
        ),
        "lang_urls": {code: url_with(request, lang=code) for code in LANGUAGES},
        "title_en": lambda p: (
            problem_title_en(
                str(p.get("title") or ""),
                scenario=p.get("scenario"),
                keywords=list(p.get("keywords") or []),
            )
            if lang == "en"
            else None
        ),
        "nav_path": request.url.path,
        **context,
    }
    response = templates().TemplateResponse(request, template, ctx)
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie("lang", lang, samesite="lax")
    return response


#: Bar filters a problem cannot answer from its own summary (it mixes channels, places
#: and sentiments): they are checked voice by voice in the lake.
VOICE_LEVEL_FILTERS = ("district", "channel", "sentiment")


def problems_in_bar(
    request: Request, principal: Principal, problems: list[Any], *, settings: Any, session: Any
) -> list[Any]:
    """Keep the problems with at least one member voice inside the request's filter bar.

    Dates, province, city and scenario are already filtered from a problem's own daily,
    region and scenario summary (``voxloop.detect.service.filter_problems``); when the
    bar also sets a district, channel or sentiment, every bar filter is applied to each
    member voice (``voxloop.web.queries.problem_voice_counts``).
    """
    filters: PageFilters = request_filters(request, principal)
    if not problems or not any(getattr(filters, name) for name in VOICE_LEVEL_FILTERS):
        return list(problems)
    from sqlalchemy import select

    from voxloop.detect.models import ProblemMember
    from voxloop.web.queries import problem_voice_counts

    members = session.execute(
        select(ProblemMember.problem_id, ProblemMember.voice_id).where(
            ProblemMember.problem_id.in_([p.id for p in problems])
        )
    ).all()
    counts = problem_voice_counts(
        settings=settings, members=[(m[0], m[1]) for m in members], filters=filters
    )
    return [p for p in problems if counts.get(p.id)]


_CJK = re.compile(r"[\u3400-\u9fff]")


def _bigrams(text: str) -> set[str]:
    chars = "".join(_CJK.findall(text))
    return {chars[i : i + 2] for i in range(len(chars) - 1)}


@cache
def _subcategory_grams() -> dict[str, list[tuple[str, set[str]]]]:
    """Return ``{scenario: [(subcategory English name, its Chinese character bigrams)]}``."""
    try:
        from voxloop.understand.taxonomy import default_taxonomy

        taxonomy = default_taxonomy()
    except Exception:  # pragma: no cover - the understand domain is optional for pages
        return {}
    return {
        s.code: [
            (sub.en, set().union(_bigrams(sub.zh), *(_bigrams(e) for e in sub.examples)))
            for sub in s.subcategories
        ]
        for s in taxonomy.scenarios
    }


def problem_title_en(title: str, *, scenario: str | None, keywords: list[str]) -> str | None:
    """Return an English heading for a problem whose generated title is Chinese, else None.

    The phrase title is taken from the problem's (Chinese) voices and is not translated:
    the heading is the scenario's English name from the taxonomy and, when the title and
    key terms share at least two Chinese character bigrams with one subcategory's name
    and example phrases (and more than with any other), that subcategory's English name.
    Pages show it beside the original title, marked as derived from the taxonomy.
    """
    if not _CJK.search(title):
        return None
    names = taxonomy_names().get("scenario", {})
    if not scenario or scenario not in names:
        return None
    heading = names[scenario][1]
    grams = _bigrams(" ".join([title, *keywords]))
    scored = sorted(
        ((len(grams & subs), name) for name, subs in _subcategory_grams().get(scenario, [])),
        reverse=True,
    )
    if scored and scored[0][0] >= 2 and (len(scored) == 1 or scored[1][0] < scored[0][0]):
        heading += f": {scored[0][1]}"
    return heading


def problem_label(view: dict[str, Any], lang: str) -> str:
    """Return a problem's name for a chart in ``lang``: the English heading on English pages.

    See ``problem_title_en``; Chinese pages, and titles that are not Chinese, keep the
    generated title.
    """
    title = str(view.get("title") or "")
    if lang != "en":
        return title
    english = problem_title_en(
        title, scenario=view.get("scenario"), keywords=list(view.get("keywords") or [])
    )
    return f"{english} ({title})" if english else title
