"""HTTP routes of the assist domain: JSON API (router, under /api/v1) and pages.

Assist sessions (``voxloop.assist.session``) live in this server process; their bodies are
parsed here rather than by FastAPI so that a refused turn (a 1 MB text, say) is named in
the 422 without echoing the text back, and an oversized body is refused with 413 before
it is parsed.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from voxloop.act.access import Principal
from voxloop.api.service import get_session, get_settings, optional_principal, require_permission
from voxloop.assist import kb
from voxloop.assist import session as assist
from voxloop.assist.schemas import (
    Answer,
    AnswerRequest,
    SessionCreate,
    SessionState,
    TurnsRequest,
)
from voxloop.config import Settings

router = APIRouter(tags=["assist"])
pages = APIRouter(include_in_schema=False)

SettingsDep = Annotated[Settings, Depends(get_settings)]
READ = Depends(require_permission("read"))
WRITE = Depends(require_permission("write"))

#: Largest request body of the session routes; 100 turns of 4,000 CJK characters fit.
MAX_BODY_BYTES = 2 * 1024 * 1024
SESSION_ID = Path(pattern=r"^[A-Za-z0-9._:-]{1,100}$", description="Assist session id.")

_STORE_LOCK = threading.Lock()
M = TypeVar("M", bound=BaseModel)


@router.post("/assist/answer", response_model=Answer)
def post_answer(body: AnswerRequest, settings: SettingsDep) -> Answer:
    """Answer a question from the knowledge base, quoting the entry, or route to a human."""
    from voxloop.store.service import part_files

    if not part_files(settings, kb.KB_TABLE):
        # No knowledge base loaded yet: nothing to quote, so a human answers.
        return Answer(
            known=False,
            answer=None,
            entry_id=None,
            version=None,
            confidence=0.0,
            routed_to_human=True,
            candidates=[],
        )
    return kb.answer_question(settings=settings, request=body)


def session_store(request: Request) -> assist.SessionStore:
    """Return this application's assist-session store (created on first use)."""
    state = request.app.state
    with _STORE_LOCK:
        store = getattr(state, "assist_sessions", None)
        if store is None:
            store = assist.SessionStore()
            state.assist_sessions = store
    return store


async def _parse(request: Request, model: type[M], *, empty_ok: bool = False) -> M:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise _too_large(int(length))
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise _too_large(len(raw))
    if not raw.strip() and empty_ok:
        return model()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        # The refused value is not echoed back: it may be a megabyte, or a customer's words.
        detail = [
            {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_input=False, include_url=False)
        ]
        raise HTTPException(status_code=422, detail=detail) from None


def _too_large(size: int) -> HTTPException:
    return HTTPException(
        status_code=413,
        detail=[
            {
                "loc": ["body"],
                "msg": f"request body of {size} bytes exceeds {MAX_BODY_BYTES} bytes "
                f"(a turn's text holds at most 4000 characters, a request 100 turns)",
                "type": "too_large",
            }
        ],
    )


async def _create_body(request: Request) -> SessionCreate:
    return await _parse(request, SessionCreate, empty_ok=True)


async def _turns_body(request: Request) -> TurnsRequest:
    return await _parse(request, TurnsRequest)


def _auditor(session: Session, principal: Principal, purpose: str) -> Any:
    from voxloop.act.service import record_access

    def audit(customer_id: str) -> None:
        record_access(
            session=session, principal=principal, customer_ids=[customer_id], purpose=purpose
        )

    return audit


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "content": {"application/json": {"schema": model.model_json_schema()}},
            "required": model is TurnsRequest,
        }
    }


@router.post(
    "/assist/session",
    response_model=SessionState,
    status_code=201,
    openapi_extra=_body_schema(SessionCreate),
)
def post_session(
    request: Request,
    settings: SettingsDep,
    body: SessionCreate = Depends(_create_body),
    principal: Principal = WRITE,
    db: Session = Depends(get_session),
) -> SessionState:
    """Open an agent-assist session, optionally for a customer (real id or pseudonym)."""
    return assist.create_session(
        store=session_store(request),
        settings=settings,
        principal=principal,
        request=body,
        on_customer_read=_auditor(db, principal, "assist.session"),
    )


@router.post(
    "/assist/session/{session_id}/turns",
    response_model=SessionState,
    openapi_extra=_body_schema(TurnsRequest),
)
def post_turns(
    request: Request,
    settings: SettingsDep,
    session_id: str = SESSION_ID,
    body: TurnsRequest = Depends(_turns_body),
    principal: Principal = WRITE,
    db: Session = Depends(get_session),
) -> SessionState:
    """Add the turns said since the last call; return scenario, emotion, answers, plan."""
    return assist.add_turns(
        store=session_store(request),
        settings=settings,
        principal=principal,
        session_id=session_id,
        request=body,
        on_customer_read=_auditor(db, principal, "assist.session"),
    )


@router.get("/assist/session/{session_id}", response_model=SessionState)
def get_session_state(
    request: Request,
    settings: SettingsDep,
    session_id: str = SESSION_ID,
    principal: Principal = READ,
) -> SessionState:
    """Return an assist session's state with all its turns (404 when unknown here)."""
    return assist.session_state(
        store=session_store(request), settings=settings, principal=principal, session_id=session_id
    )


# ---------------------------------------------------------------------------
# Pages


#: Messages the console's script needs, by the name it uses.
_CONSOLE_MESSAGES = {
    "none": "assist.console.none",
    "error": "assist.console.error",
    "emotion": "assist.console.emotion",
    "intent": "assist.console.intent",
    "confidence": "assist.console.confidence",
    "escalation": "assist.console.escalation",
    "entry": "assist.console.entry",
    "version": "assist.console.version",
    "similarity": "assist.console.similarity",
    "unsure": "assist.console.unsure",
    "due": "assist.console.due",
    "if_escalated": "assist.console.if_escalated",
    "hours": "assist.console.hours",
    "current_plan": "assist.console.current_plan",
    "recommended": "assist.console.recommended",
    "saving": "assist.console.saving",
    "usage": "assist.console.usage",
    "role_customer": "assist.console.role.customer",
    "role_agent": "assist.console.role.agent",
    **{f"trend_{k}": f"assist.console.trend.{k}" for k in ("improving", "stable", "worsening")},
    "trend_unknown": "assist.console.trend.unknown",
    **{f"level_{k}": f"assist.console.level.{k}" for k in ("none", "watch", "high")},
}

#: A sample call written for the console (plan far above the usage, then a 10080 threat).
BUILTIN_DEMO: dict[str, Any] = {
    "id": "builtin",
    "customer_id": None,
    "channel": "hotline_10086",
    "turns": [
        {"role": "agent", "text": "您好，很高兴为您服务，请问有什么可以帮您？"},
        {"role": "customer", "text": "你好，我每个月交199的套餐，流量根本用不完，想换个便宜的。"},
        {"role": "agent", "text": "好的，我帮您查一下您最近几个月的实际用量。"},
        {"role": "customer", "text": "上次打电话也说帮我改，到现在都没改，太气人了！"},
        {"role": "agent", "text": "非常抱歉给您带来不便，我马上为您处理。"},
        {"role": "customer", "text": "再不解决我就打10080投诉，还要找媒体曝光！"},
    ],
}


@pages.get("/assist", response_class=HTMLResponse, response_model=None)
def console_page(
    request: Request,
    settings: SettingsDep,
    principal: Principal | None = Depends(optional_principal),
) -> Response:
    """Show the agent console: live turns in, scenario, emotion, answers, plan out."""
    from urllib.parse import quote

    from voxloop.ingest.schemas import Channel
    from voxloop.web.service import language, render, taxonomy_names, translate

    if principal is None:
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
    lang = language(request)
    scope = None
    if principal.province is not None:
        scope = f"{principal.province}/{principal.city}" if principal.city else principal.province
    intents = {
        code: names[0] if lang == "zh-CN" else names[1]
        for code, names in taxonomy_names().get("intent", {}).items()
    }
    return render(
        request,
        "assist/console.html",
        {
            "bar": None,  # the shared filter bar filters stored voices, not a live call
            "scope": scope,
            "can_write": principal.can("write"),
            "channels": [c.value for c in Channel],
            "intents": intents,
            "i18n": {name: translate(key, lang) for name, key in _CONSOLE_MESSAGES.items()},
            "builtin": BUILTIN_DEMO,
            "demos": assist.demo_conversations(settings=settings, principal=principal),
        },
    )
