"""Agent assist during a conversation: per-session state updated turn by turn.

Each call brings only the turns not sent before; only those are read. One call reads, in
one ``read_table`` pass over the understanding bundle, every new customer turn (sentiment,
emotion, urgency) plus the customer's words so far (scenario, subcategory, intent), then
looks the latest customer turn up in the knowledge base, and derives the escalation
warning, the service commitment (``act/commitments.yaml``) and, once per session, the plan
recommendation from the customer's profile in the lake.

Where sessions live
-------------------
In the memory of the server process that created them: a bounded LRU (``MAX_SESSIONS``)
with an idle TTL (``SESSION_TTL_SECONDS``). A session id this process does not hold
answers 404 naming the session, and turns are never added to a session implicitly, so
behind several server processes a request reaching the wrong one fails loudly instead of
starting a silently empty state: route ``/api/v1/assist/session/{id}`` by session id
(sticky sessions). Finished conversations are not persisted here; the transcript belongs
in ingest (``POST /api/v1/ingest/voice``).

Region scope: a session belongs to its customer's region (the creator's scope when no
profile is known); callers outside it get 404, as if the session did not exist.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pyarrow as pa

from voxloop.act.access import Principal
from voxloop.assist.plans import customer_profile, load_catalogue, pseudonym_of, recommend_plan
from voxloop.assist.schemas import (
    CommitmentView,
    EmotionPoint,
    EmotionTrend,
    Escalation,
    PlanRecommendation,
    ScenarioView,
    SessionCreate,
    SessionState,
    Suggestion,
    TurnOut,
    TurnsRequest,
)
from voxloop.config import Settings
from voxloop.errors import ConflictError, NotFoundError, UnusableInputError
from voxloop.understand.reading import ReadingBundle

#: Idle seconds after which a session is forgotten.
SESSION_TTL_SECONDS = 4 * 3600
#: Sessions one process holds; the least recently used one goes first.
MAX_SESSIONS = 500
#: Turns and characters one session may hold (an hour-long call is about 20,000
#: characters); with ``MAX_SESSIONS`` they bound the memory of the store (~200 MB at most).
MAX_TURNS_PER_SESSION = 1_000
MAX_SESSION_CHARS = 200_000
#: Characters of the customer's words read for the scenario: the first customer turn
#: names the problem, the latest ones what it became; the encoder's cost grows with length.
SCENARIO_HEAD_CHARS = 80
SCENARIO_TAIL_CHARS = 120
#: A customer turn shorter than this is looked up in the KB together with the previous one.
SHORT_QUERY_CHARS = 8
#: Change of sentiment (recent turns minus earlier ones) that counts as a trend.
TREND_DELTA = 0.25
#: Urgency rules whose match is an escalation threat (10080, 12300/MIIT, 12315, media...).
THREAT_RULES = ("supervision", "regulator", "consumer_body", "media", "legal", "safety")
#: The escalated channel each threat names (its commitment applies once it is taken).
THREAT_CHANNELS = {
    "regulator": "regulator_12300",
    "supervision": "supervision_10080",
    "consumer_body": "consumer_12315",
    "media": "media",
}
#: A customer turn shorter than this ("嗯", "好的") keeps the scenario and the suggestions.
BACKCHANNEL_CHARS = 4

_REASONS: dict[str, tuple[str, str]] = {
    "supervision": ("扬言越级投诉（10080/上级部门）", "threatens to escalate (10080, head office)"),
    "regulator": ("扬言向工信部/12300投诉", "threatens the regulator (MIIT / 12300)"),
    "consumer_body": ("扬言向12315/消协投诉", "threatens the consumer body (12315)"),
    "media": ("扬言媒体曝光", "threatens to go to the media"),
    "legal": ("扬言起诉或报警", "threatens legal action or the police"),
    "safety": ("涉及人身安全，立即升级", "mentions self-harm: escalate at once"),
    "urgency": ("紧急程度高", "high urgency"),
    "worsening": ("情绪持续恶化", "sentiment keeps getting worse"),
    "anger": ("多轮表达愤怒", "anger in several turns"),
}


# ---------------------------------------------------------------------------
# Session store


@dataclass
class AssistSession:
    """The state of one conversation (mutated under ``lock``)."""

    session_id: str
    created_at: datetime
    updated_at: datetime
    province: str | None
    city: str | None
    channel: str | None
    customer_id: str | None = None
    turns: list[TurnOut] = field(default_factory=list)
    points: list[EmotionPoint] = field(default_factory=list)
    reasons: dict[str, None] = field(default_factory=dict)
    triggers: dict[str, None] = field(default_factory=dict)
    customer_texts: list[str] = field(default_factory=list)
    chars: int = 0
    scenario: ScenarioView | None = None
    suggestions: list[Suggestion] = field(default_factory=list)
    suggestions_note: str | None = "no customer turn yet"
    commitment: CommitmentView | None = None
    plan: PlanRecommendation | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def region(self) -> str | None:
        """Return ``"province/city"`` (or the province alone) of the session."""
        if self.province is None:
            return None
        return f"{self.province}/{self.city}" if self.city else self.province


class SessionStore:
    """Sessions of this process: a bounded LRU with an idle time-to-live.

    Parameters
    ----------
    max_sessions : sessions kept; adding one more evicts the least recently used.
    ttl_seconds : a session untouched this long is gone.
    clock : monotonic seconds (replaceable in tests).
    """

    def __init__(
        self,
        *,
        max_sessions: int = MAX_SESSIONS,
        ttl_seconds: float = SESSION_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_sessions = max_sessions
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._items: OrderedDict[str, tuple[float, AssistSession]] = OrderedDict()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        # Items are in last-touched order, so the expired ones are at the front.
        while self._items:
            touched, _ = next(iter(self._items.values()))
            if now - touched < self.ttl_seconds:
                break
            self._items.popitem(last=False)

    def add(self, session: AssistSession) -> None:
        """Store a new session; refuse an id already held."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            if session.session_id in self._items:
                raise ConflictError(f"session_id: assist session {session.session_id!r} exists")
            self._items[session.session_id] = (now, session)
            while len(self._items) > self.max_sessions:
                self._items.popitem(last=False)

    def get(self, session_id: str) -> AssistSession:
        """Return a session and mark it used; raise ``NotFoundError`` when not held."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            item = self._items.get(session_id)
            if item is None:
                raise NotFoundError(_unknown(session_id))
            self._items[session_id] = (now, item[1])
            self._items.move_to_end(session_id)
            return item[1]

    def __len__(self) -> int:
        with self._lock:
            self._expire(self.clock())
            return len(self._items)


def _unknown(session_id: str) -> str:
    return (
        f"session {session_id!r}: no such assist session in this server process (expired, "
        "never created, or created by another process: create it with "
        "POST /api/v1/assist/session and route its calls to the same process)"
    )


def _visible(store: SessionStore, principal: Principal, session_id: str) -> AssistSession:
    session = store.get(session_id)
    if not principal.sees(session.province, session.city):
        raise NotFoundError(_unknown(session_id))
    return session


# ---------------------------------------------------------------------------
# Models


_BUNDLES: dict[str, ReadingBundle] = {}
_BUNDLE_LOCK = threading.Lock()


def assist_bundle(settings: Settings) -> ReadingBundle:
    """Return the newest understanding bundle for live turns, loaded once per version.

    Live turns are one-off texts: the scenario encoder runs without the lake's embedding
    cache, which would otherwise gain two files per turn.
    """
    from voxloop.understand.embed_cache import CachedEncoder
    from voxloop.understand.service import latest_model_version, load_bundle, models_dir

    version = latest_model_version(settings)
    key = f"{models_dir(settings).resolve()}::{version}"
    with _BUNDLE_LOCK:
        found = _BUNDLES.get(key)
        if found is not None:
            return found
        bundle = load_bundle(settings=settings, version=version)
        encoder = getattr(bundle.scenario, "encoder", None)
        if isinstance(encoder, CachedEncoder):
            scenario = copy.copy(bundle.scenario)
            scenario.encoder = encoder.inner  # type: ignore[union-attr]
            bundle = dataclasses.replace(bundle, scenario=scenario)
        _BUNDLES[key] = bundle
        return bundle


_WARM: set[tuple[str, str, int]] = set()


def warm_up(settings: Settings) -> None:
    """Load the models and the KB index now, so a session's first turn is not the slow one."""
    from voxloop.assist import kb
    from voxloop.store.service import part_files
    from voxloop.understand.reading import read_table

    bundle = assist_bundle(settings)
    kb_parts = len(part_files(settings, kb.KB_TABLE))
    key = (str(settings.lake_dir.resolve()), bundle.version, kb_parts)
    if key in _WARM:
        return
    # A first reading loads what the bundle loads lazily (corpus models, encoder weights).
    read_table(pa.table({"id": ["warm"], "text": ["您好，我想咨询一下套餐"]}), bundle=bundle)
    if kb_parts:
        kb.retriever(settings).search("warm up", k=1)
    _threat_patterns()
    _WARM.add(key)


@cache
def _threat_patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    from voxloop.understand.urgency import URGENCY_RULES

    return tuple(
        (r.id, re.compile(r.pattern, re.ASCII)) for r in URGENCY_RULES if r.id in THREAT_RULES
    )


# ---------------------------------------------------------------------------
# Service functions


def create_session(
    *,
    store: SessionStore,
    settings: Settings,
    principal: Principal,
    request: SessionCreate,
    on_customer_read: Callable[[str], None] | None = None,
) -> SessionState:
    """Open a session (optionally for a customer and channel); return its empty state."""
    now = datetime.now(UTC)
    session = AssistSession(
        session_id=request.session_id or uuid.uuid4().hex,
        created_at=now,
        updated_at=now,
        province=principal.province,
        city=principal.city,
        channel=request.channel,
    )
    if request.customer_id is not None:
        _attach_customer(settings, principal, session, request.customer_id, on_customer_read)
    store.add(session)
    warm_up(settings)
    return _state(settings, session, elapsed_ms=None, with_turns=False)


def session_state(
    *, store: SessionStore, settings: Settings, principal: Principal, session_id: str
) -> SessionState:
    """Return a session's state with all its turns."""
    session = _visible(store, principal, session_id)
    with session.lock:
        return _state(settings, session, elapsed_ms=None, with_turns=True)


def add_turns(
    *,
    store: SessionStore,
    settings: Settings,
    principal: Principal,
    session_id: str,
    request: TurnsRequest,
    on_customer_read: Callable[[str], None] | None = None,
) -> SessionState:
    """Append new turns to a session, read only those, and return the updated state."""
    started = time.perf_counter()
    session = _visible(store, principal, session_id)
    with session.lock:
        held, sent = len(session.turns), len(request.turns)
        if held + sent > MAX_TURNS_PER_SESSION:
            raise UnusableInputError(
                f"turns: session {session_id!r} holds at most {MAX_TURNS_PER_SESSION} turns "
                f"({held} held, {sent} sent)"
            )
        chars = sum(len(t.text) for t in request.turns)
        if session.chars + chars > MAX_SESSION_CHARS:
            raise UnusableInputError(
                f"turns: session {session_id!r} holds at most {MAX_SESSION_CHARS} characters "
                f"({session.chars} held, {chars} sent)"
            )
        if request.customer_id is not None:
            if session.customer_id is None:
                _attach_customer(
                    settings, principal, session, request.customer_id, on_customer_read
                )
            elif _pseudonym(settings, request.customer_id) != session.customer_id and (
                request.customer_id != session.customer_id
            ):
                raise ConflictError(
                    f"customer_id: session {session_id!r} already belongs to another customer"
                )
        new = [
            TurnOut(index=held + i, role=t.role, text=t.text, start_ms=t.start_ms, end_ms=t.end_ms)
            for i, t in enumerate(request.turns)
        ]
        session.turns.extend(new)
        session.chars += chars
        said = [t for t in new if t.role == "customer"]
        if said:
            _read_customer_turns(settings, session, said)
        session.updated_at = datetime.now(UTC)
        elapsed = (time.perf_counter() - started) * 1000
        return _state(settings, session, elapsed_ms=round(elapsed, 2), with_turns=False)


def _pseudonym(settings: Settings, customer_id: str) -> str:
    return pseudonym_of(settings=settings, customer_id=customer_id)


def _attach_customer(
    settings: Settings,
    principal: Principal,
    session: AssistSession,
    customer_id: str,
    on_customer_read: Callable[[str], None] | None,
) -> None:
    profile = customer_profile(settings=settings, customer_id=customer_id)
    if profile is None:
        session.customer_id = _pseudonym(settings, customer_id)
        plan = recommend_plan(catalogue=load_catalogue(settings), customer=None)
        session.plan = plan.model_copy(
            update={
                "customer_id": session.customer_id,
                "explanation": {
                    "zh-CN": "客户资料库中没有该客户，无法推荐套餐。",
                    "en": "This customer has no profile in the lake, so no plan is recommended.",
                },
            }
        )
        return
    if not principal.sees(profile.get("province"), profile.get("city")):
        # Outside the caller's region the customer is as unknown as a missing one.
        raise NotFoundError(f"customer_id: no customer {customer_id!r} in your region scope")
    session.customer_id = str(profile["id"])
    session.province = profile.get("province") or session.province
    session.city = profile.get("city") if profile.get("province") else session.city
    if on_customer_read is not None:
        on_customer_read(session.customer_id)
    session.plan = recommend_plan(catalogue=load_catalogue(settings), customer=profile)


def _scenario_text(texts: list[str]) -> str:
    # Head and tail are gathered from the ends, so a long session costs no more per turn.
    head: list[str] = []
    size = 0
    for text in texts:
        if size >= SCENARIO_HEAD_CHARS + SCENARIO_TAIL_CHARS:
            break
        size += len(text) + (1 if head else 0)
        head.append(text)
    if len(head) == len(texts):
        joined = "，".join(texts)
        if len(joined) <= SCENARIO_HEAD_CHARS + SCENARIO_TAIL_CHARS:
            return joined
    tail: list[str] = []
    size = 0
    for text in reversed(texts):
        if size >= SCENARIO_TAIL_CHARS:
            break
        size += len(text) + (1 if tail else 0)
        tail.insert(0, text)
    return "，".join(head)[:SCENARIO_HEAD_CHARS] + "，" + "，".join(tail)[-SCENARIO_TAIL_CHARS:]


def _read_customer_turns(settings: Settings, session: AssistSession, said: list[TurnOut]) -> None:
    from voxloop.understand.reading import read_table

    bundle = assist_bundle(settings)
    session.customer_texts.extend(t.text for t in said)
    # A backchannel ("嗯", "好的") changes neither the scenario nor what to answer.
    rethink = session.scenario is None or any(
        len(t.text.strip()) >= BACKCHANNEL_CHARS for t in said
    )
    texts = [t.text for t in said]
    ids = [f"t{t.index}" for t in said]
    if rethink:
        texts.append(_scenario_text(session.customer_texts))
        ids.append("so_far")
    # One pass over the bundle: its regexes and matrix products cost the same for 1 row or 5.
    out = read_table(pa.table({"id": ids, "text": texts}), bundle=bundle).to_pylist()
    for turn, row in zip(said, out[: len(said)], strict=True):
        session.points.append(
            EmotionPoint(
                turn=turn.index,
                sentiment_score=round(float(row["sentiment_score"] or 0.0), 4),
                emotion=row["emotion"],
                urgency=round(float(row["urgency"] or 0.0), 4),
                triggers=list(row["urgency_triggers"] or []),
            )
        )
        session.triggers.update(dict.fromkeys(row["urgency_triggers"] or []))
        lower = turn.text.lower()
        for rule_id, pattern in _threat_patterns():
            if pattern.search(lower):
                session.reasons[rule_id] = None
    if not rethink:
        return
    so_far = out[-1]
    code = so_far["scenario"]
    names = next(
        ({"zh-CN": s.zh, "en": s.en} for s in bundle.taxonomy.scenarios if s.code == code), {}
    )
    session.scenario = ScenarioView(
        scenario=code,
        subcategory=so_far["subcategory"],
        confidence=round(float(so_far["scenario_confidence"] or 0.0), 4),
        source=so_far["scenario_source"],
        intent=so_far["intent"],
        names=names,
    )
    session.commitment = _commitment(session, code)
    fresh, note = _suggest(settings, session, said[-1].index)
    if any(s.confident for s in fresh) or not any(s.confident for s in session.suggestions):
        session.suggestions, session.suggestions_note = fresh, note
    else:
        # Nothing sure for the last turn ("好的", a threat...): the earlier answers still hold.
        session.suggestions_note = (
            "no confident knowledge-base match for the last customer turn; "
            "the suggestions of an earlier turn are kept"
        )


def _commitment(session: AssistSession, scenario: str | None) -> CommitmentView | None:
    from voxloop.act.commitments import due_for_order, load_commitments

    book = load_commitments()
    found, due = due_for_order(
        book=book, scenario=scenario, channel=session.channel, start=session.created_at
    )
    commitment = book.get(found) if found else None
    if commitment is None or due is None:
        return None
    return CommitmentView(
        id=commitment.id,
        name=commitment.name,
        hours=commitment.hours,
        calendar=commitment.calendar,
        due_at=due,
    )


def _suggest(
    settings: Settings, session: AssistSession, turn: int
) -> tuple[list[Suggestion], str | None]:
    from voxloop.assist import kb
    from voxloop.assist.schemas import AnswerRequest
    from voxloop.store.service import part_files

    if not part_files(settings, kb.KB_TABLE):
        return [], "no knowledge base imported (voxloop kb import FILE)"
    texts = session.customer_texts
    query = texts[-1]
    if len(query.strip()) < SHORT_QUERY_CHARS and len(texts) > 1:
        query = f"{texts[-2]} {query}"
    answer = kb.answer_question(
        settings=settings,
        request=AnswerRequest(question=query[-2_000:], region=session.region),
    )
    entries = {(e.entry_id, e.version): e for e in kb.retriever(settings).entries_}
    out = []
    for c in answer.candidates:
        entry = entries.get((c.entry_id, c.version))
        if entry is None:  # the KB changed between the two calls
            continue
        out.append(
            Suggestion(
                entry_id=c.entry_id,
                version=c.version,
                question=c.question,
                answer=entry.answer,
                similarity=c.similarity,
                confident=c.similarity >= settings.assist_answer_threshold,
                from_turn=turn,
            )
        )
    if not any(s.confident for s in out):
        out = out[:1]  # one unsure hint, marked as such, rather than three guesses
    return out, None if out else "no knowledge-base entry matches the customer's last turn"


def _trend(points: list[EmotionPoint]) -> str:
    if not points:
        return "unknown"
    if len(points) < 2:
        return "stable"
    scores = [p.sentiment_score for p in points]
    window = 2 if len(scores) >= 3 else 1
    recent = sum(scores[-window:]) / window
    before = scores[:-window][-3:]
    delta = recent - sum(before) / len(before)
    if delta <= -TREND_DELTA:
        return "worsening"
    if delta >= TREND_DELTA:
        return "improving"
    return "stable"


def _escalation(session: AssistSession, trend: str) -> Escalation:
    from voxloop.understand.urgency import ESCALATION_THRESHOLD

    reasons = list(session.reasons)
    points = session.points
    if any(p.urgency >= ESCALATION_THRESHOLD for p in points):
        reasons.append("urgency")
    if trend == "worsening" and points and points[-1].sentiment_score < 0:
        reasons.append("worsening")
    if sum(p.emotion == "anger" for p in points[-3:]) >= 2:
        reasons.append("anger")
    threat = any(r in THREAT_RULES for r in reasons)
    channel = next((THREAT_CHANNELS[r] for r in reasons if r in THREAT_CHANNELS), None)
    level = "high" if threat else "watch" if reasons else "none"
    zh = "；".join(_REASONS[r][0] for r in reasons)
    en = "; ".join(_REASONS[r][1] for r in reasons)
    if threat:
        zh += "。请安抚客户、当场承诺处理时限，必要时转班长。"
        en += ". Calm the customer, commit to a deadline now, hand over to a supervisor if needed."
    return Escalation(
        warning=bool(reasons),
        level=level,
        reasons=reasons,
        triggers=list(session.triggers),
        explanation={"zh-CN": zh or "暂无升级风险", "en": en or "No escalation risk so far"},
        if_escalated=_escalated_commitment(session, channel) if channel else None,
    )


def _escalated_commitment(session: AssistSession, channel: str) -> CommitmentView | None:
    from voxloop.act.commitments import due_for_order, load_commitments

    book = load_commitments()
    scenario = session.scenario.scenario if session.scenario else None
    found, due = due_for_order(
        book=book, scenario=scenario, channel=channel, start=session.updated_at
    )
    commitment = book.get(found) if found else None
    if commitment is None or due is None:
        return None
    return CommitmentView(
        id=commitment.id,
        name=commitment.name,
        hours=commitment.hours,
        calendar=commitment.calendar,
        due_at=due,
    )


def _state(
    settings: Settings, session: AssistSession, *, elapsed_ms: float | None, with_turns: bool
) -> SessionState:
    trend = _trend(session.points)
    return SessionState(
        session_id=session.session_id,
        customer_id=session.customer_id,
        channel=session.channel,
        region=session.region,
        created_at=session.created_at,
        updated_at=session.updated_at,
        n_turns=len(session.turns),
        scenario=session.scenario,
        emotion=EmotionTrend(
            points=list(session.points),
            trend=trend,
            escalation=_escalation(session, trend),
        ),
        suggestions=list(session.suggestions),
        suggestions_note=session.suggestions_note,
        commitment=session.commitment,
        plan=session.plan,
        elapsed_ms=elapsed_ms,
        turns=list(session.turns) if with_turns else None,
    )


# ---------------------------------------------------------------------------
# Demo conversations for the console

_SPEAKER = re.compile(r"(坐席|客服|客户|用户|Agent|Customer)\s*[：:]\s*")
_ROLE = {"坐席": "agent", "客服": "agent", "Agent": "agent"}


def split_transcript(text: str) -> list[dict[str, str]]:
    """Split a "坐席：…客户：…" (or "Agent: … Customer: …") transcript into turns."""
    marks = list(_SPEAKER.finditer(text))
    turns = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        said = text[m.end() : end].strip()
        if said:
            turns.append({"role": _ROLE.get(m.group(1), "customer"), "text": said})
    return turns


def demo_conversations(
    *, settings: Settings, principal: Principal, limit: int = 5
) -> list[dict[str, Any]]:
    """Return recent call transcripts of the caller's region, split into turns, to replay."""
    from voxloop.store.service import lake_connection, part_files

    if not part_files(settings, "voices"):
        return []
    where = ["kind = 'call_transcript'"]
    params: list[Any] = []
    if principal.province is not None:
        where.append("province = ?")
        params.append(principal.province)
        if principal.city is not None:
            where.append("city = ?")
            params.append(principal.city)
    con = lake_connection(settings, ("voices",))
    try:
        rows = con.execute(
            "SELECT id, text, customer_id, channel FROM voices WHERE "
            + " AND ".join(where)
            + " ORDER BY received_at DESC LIMIT ?",
            [*params, limit * 4],
        ).fetchall()
    finally:
        con.close()
    out: list[dict[str, Any]] = []
    for voice_id, text, customer_id, channel in rows:
        turns = split_transcript(str(text))
        if len(turns) >= 2 and any(t["role"] == "customer" for t in turns):
            out.append(
                {"id": voice_id, "customer_id": customer_id, "channel": channel, "turns": turns}
            )
        if len(out) >= limit:
            break
    return out
