"""Monthly (and ad-hoc) reports: render, store, list and schedule them.

``build_report`` gathers the facts of one month and region (``report_data``) and renders
them as PDF or HTML (``report_render``).  Stored reports live under
``$VOXLOOP_HOME/lake/reports/``: one file per report plus ``index.json`` (period, region,
language, format, creation time, file name and size), rewritten atomically under a file
lock so the server and CLI runs can add reports at the same time.  Lake views are made
from Parquet parts only, so this folder never becomes a table.

``run_scheduled_reports`` is what the scheduler tick calls: with
``report_schedule = "monthly"`` it renders last month's national report (zh-CN, PDF and
HTML) once; later ticks of the same month find it in the index and do nothing.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from voxloop.act.access import Principal
from voxloop.config import Settings
from voxloop.errors import NotFoundError, PermissionDeniedError, UnusableInputError
from voxloop.web import report_data, report_render
from voxloop.web.service import LANGUAGES

#: Language and formats of the scheduled monthly report.
SCHEDULED_LANG = "zh-CN"
SCHEDULED_FORMATS = ("pdf", "html")
MEDIA_TYPES = {"pdf": "application/pdf", "html": "text/html; charset=utf-8"}


class ReportRequest(BaseModel):
    """What to generate: a month, an optional region, a language and a format."""

    period: str = Field(description="Calendar month YYYY-MM (operator's time zone).")
    region: str | None = Field(default=None, max_length=200, description="province[/city]")
    lang: str = "zh-CN"
    format: str = "pdf"


class ReportEntry(BaseModel):
    """One stored report as listed in the index."""

    id: str
    period: str
    region: str | None
    lang: str
    format: str
    created_at: datetime
    file: str
    size: int
    scheduled: bool = False
    created_by: str | None = None

    @property
    def filename(self) -> str:
        """Return the download name, e.g. ``voxloop-report-2026-10-江苏-zh-CN.pdf``."""
        region = f"-{self.region.replace('/', '-')}" if self.region else ""
        return f"voxloop-report-{self.period}{region}-{self.lang}.{self.format}"


def validate_request(request: ReportRequest, *, settings: Settings) -> report_data.Period:
    """Check the request's fields; return its period (``UnusableInputError`` names the field)."""
    if request.lang not in LANGUAGES:
        raise UnusableInputError(f"lang {request.lang!r}: expected one of {', '.join(LANGUAGES)}")
    if request.format not in report_render.FORMATS:
        raise UnusableInputError(
            f"format {request.format!r}: expected one of {', '.join(report_render.FORMATS)}"
        )
    report_data.region_principal(request.region)  # raises on a malformed region
    return report_data.parse_period(request.period, timezone=settings.timezone)


def build_report(
    *, settings: Settings, session: Session, request: ReportRequest
) -> tuple[bytes, dict[str, Any]]:
    """Gather and render one report; return the document and its facts."""
    period = validate_request(request, settings=settings)
    facts = report_data.gather(
        settings=settings, session=session, period=period, region=request.region or None
    )
    return report_render.render(facts, lang=request.lang, fmt=request.format), facts


# ---------------------------------------------------------------------------
# Storage


def reports_dir(settings: Settings) -> Path:
    """Return the folder of stored reports (``home/lake/reports``)."""
    return settings.lake_dir / "reports"


def _index_path(settings: Settings) -> Path:
    return reports_dir(settings) / "index.json"


def _lock(settings: Settings) -> FileLock:
    folder = reports_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(str(folder / ".index.lock"), timeout=300)


def _read_index(settings: Settings) -> list[ReportEntry]:
    path = _index_path(settings)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except ValueError as exc:
        raise UnusableInputError(f"{path}: report index is not valid JSON ({exc})") from exc
    return [ReportEntry.model_validate(r) for r in rows]


def _write_index(settings: Settings, entries: list[ReportEntry]) -> None:
    path = _index_path(settings)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(
        json.dumps([e.model_dump(mode="json") for e in entries], ensure_ascii=False, indent=1),
        encoding="utf-8",
    )
    os.replace(tmp, path)


def _scope_region(principal: Principal, region: str | None) -> str | None:
    """Return the region a principal may report on (its own scope by default; 403 above it)."""
    own = report_data.region_key(principal)
    if own is None:
        return region or None
    if not region:
        return own
    asked = report_data.region_principal(region)
    if not principal.sees(asked.province, asked.city) or (
        principal.city is not None and asked.city is None
    ):
        raise PermissionDeniedError(f"region {region!r} is outside your region scope {own!r}")
    return report_data.region_key(asked)


def visible(entry: ReportEntry, principal: Principal) -> bool:
    """Return whether ``principal`` may see a stored report (its region inside their scope)."""
    if principal.province is None:
        return True
    asked = report_data.region_principal(entry.region)
    if asked.province is None or (principal.city is not None and asked.city is None):
        return False
    return principal.sees(asked.province, asked.city)


def store_report(
    *,
    settings: Settings,
    request: ReportRequest,
    document: bytes,
    created_by: str | None,
    scheduled: bool = False,
) -> ReportEntry:
    """Write a rendered report and add it to the index."""
    with _lock(settings):
        return _add_entry(settings, request, document, created_by=created_by, scheduled=scheduled)


def _add_entry(
    settings: Settings,
    request: ReportRequest,
    document: bytes,
    *,
    created_by: str | None,
    scheduled: bool,
) -> ReportEntry:
    # The caller holds the index lock (a second FileLock on the same file would wait
    # for the first, even in one process).
    report_id = uuid.uuid4().hex[:16]
    name = f"{request.period}-{report_id}.{request.format}"
    (reports_dir(settings) / name).write_bytes(document)
    entry = ReportEntry(
        id=report_id,
        period=request.period,
        region=request.region or None,
        lang=request.lang,
        format=request.format,
        created_at=datetime.now(UTC),
        file=name,
        size=len(document),
        scheduled=scheduled,
        created_by=created_by,
    )
    _write_index(settings, [*_read_index(settings), entry])
    return entry


def generate_report(
    *,
    settings: Settings,
    session: Session,
    principal: Principal,
    request: ReportRequest,
    scheduled: bool = False,
) -> ReportEntry:
    """Render a report within the principal's region scope and store it."""
    request = request.model_copy(update={"region": _scope_region(principal, request.region)})
    document, _facts = build_report(settings=settings, session=session, request=request)
    return store_report(
        settings=settings,
        request=request,
        document=document,
        created_by=principal.username,
        scheduled=scheduled,
    )


def list_reports(*, settings: Settings, principal: Principal) -> list[ReportEntry]:
    """Return the stored reports the principal may see, newest first."""
    entries = [e for e in _read_index(settings) if visible(e, principal)]
    return sorted(entries, key=lambda e: (e.created_at, e.id), reverse=True)


def get_report(
    *, settings: Settings, principal: Principal, report_id: str
) -> tuple[ReportEntry, Path]:
    """Return a stored report and its file; 404 when unknown or outside the caller's scope."""
    for entry in _read_index(settings):
        if entry.id == report_id and visible(entry, principal):
            path = reports_dir(settings) / entry.file
            if path.is_file():
                return entry, path
            break
    raise NotFoundError(f"no report {report_id!r}")


def run_scheduled_reports(*, settings: Settings, at: datetime) -> list[ReportEntry]:
    """Render last month's scheduled report once (no-op unless ``report_schedule`` is monthly).

    Idempotent: a report of that month, language and format already in the index (from
    an earlier tick) is not rendered again.  Returns the reports created by this call.
    """
    if settings.report_schedule != "monthly":
        return []
    if at.tzinfo is None:
        raise UnusableInputError(f"at {at!r}: expected an aware datetime")
    period = report_data.period_of(at, timezone=settings.timezone).previous()
    from voxloop.act.access import SYSTEM
    from voxloop.store.service import make_engine, make_sessionmaker

    created: list[ReportEntry] = []
    engine = make_engine(settings)
    try:
        maker = make_sessionmaker(engine)
        # The whole check-render-store runs under the index lock, so two ticks at once
        # (server and CLI) render the month once.
        with _lock(settings):
            done = {
                (e.period, e.region, e.lang, e.format) for e in _read_index(settings) if e.scheduled
            }
            for fmt in SCHEDULED_FORMATS:
                if (period.key, None, SCHEDULED_LANG, fmt) in done:
                    continue
                request = ReportRequest(period=period.key, lang=SCHEDULED_LANG, format=fmt)
                with maker() as session:
                    document, _facts = build_report(
                        settings=settings, session=session, request=request
                    )
                created.append(
                    _add_entry(
                        settings, request, document, created_by=SYSTEM.username, scheduled=True
                    )
                )
    finally:
        engine.dispose()
    return created
