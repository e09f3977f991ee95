"""Query-string filters of the dashboard pages and the shapes the pages render."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from voxloop.errors import UnusableInputError

#: Query parameters of the filter bar shown on every page (fixed names, shared by domains).
FILTER_PARAMS = ("from", "to", "province", "city", "district", "channel", "scenario", "sentiment")
REGION_PARAMS = ("province", "city", "district")


class PageFilters(BaseModel):
    """The filter bar's values (query parameters); dates are local calendar days."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, populate_by_name=True)

    date_from: date | None = Field(default=None, alias="from")
    date_to: date | None = Field(default=None, alias="to")
    province: str | None = Field(default=None, max_length=100)
    city: str | None = Field(default=None, max_length=100)
    district: str | None = Field(default=None, max_length=100)
    channel: str | None = Field(default=None, max_length=100)
    scenario: str | None = Field(default=None, max_length=20)
    sentiment: Literal["negative", "neutral", "positive"] | None = None

    @model_validator(mode="after")
    def _dates_in_order(self) -> PageFilters:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError("'from' is after 'to'")
        return self

    def query(self, **changes: Any) -> dict[str, str]:
        """Return the non-empty filters as query parameters, with ``changes`` applied."""
        data = self.model_dump(by_alias=True, exclude_defaults=True)
        data.update(changes)
        return {
            k: (v.isoformat() if isinstance(v, date) else str(v).lower() if v is True else str(v))
            for k, v in data.items()
            if v not in (None, "", False)
        }

    def bar(self) -> PageFilters:
        """Return only the filter bar's fields (drop page-specific ones such as paging)."""
        return PageFilters.model_validate(self.model_dump(include=set(PageFilters.model_fields)))

    def is_empty(self) -> bool:
        """Return whether no bar filter is set."""
        return not self.bar().query()


class Scope(PageFilters):
    """Region, time window and bar filters of the overview (query parameters)."""

    days: int | None = Field(default=None, ge=1, le=3660, description="Last N days of data.")


class VoiceFilters(PageFilters):
    """Filters of the voices page (query parameters); dates are local calendar days."""

    kind: str | None = Field(default=None, max_length=100)
    review: bool | None = Field(default=None, description="Only voices whose reading needs review.")
    q: str | None = Field(default=None, max_length=200, description="Text contains (masked text).")
    page: int = Field(default=1, ge=1, le=100_000)
    per_page: int = Field(default=50, ge=1, le=500)


def parse_query(model: type[BaseModel], params: dict[str, str]) -> Any:
    """Validate query parameters into ``model``; raise a clear error naming the field.

    Empty form fields (``""``) count as absent, so a submitted filter form with blank
    inputs means "no filter".
    """
    from pydantic import ValidationError

    cleaned = {k: v for k, v in params.items() if v.strip() != ""}
    try:
        return model.model_validate(cleaned)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'query'}: {err['msg']}"
            for err in exc.errors()
        )
        raise UnusableInputError(f"invalid filter: {problems}") from exc


@dataclass
class KPIs:
    """Headline figures of the overview cards."""

    voices: int = 0
    voices_last_day: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    quarantined: int = 0
    pii_masked: int = 0
    pii_voices: int = 0
    read: int = 0
    negative_share: float | None = None
    needs_review: int = 0
    escalation_risk: int = 0


@dataclass
class VoiceRow:
    """One voice as listed on a page, with its latest reading when there is one."""

    id: str
    received_at: datetime
    channel: str
    kind: str
    province: str | None
    city: str | None
    district: str | None
    text: str
    pii: int = 0
    scenario: str | None = None
    subcategory: str | None = None
    scenario_confidence: float | None = None
    scenario_source: str | None = None
    sentiment: str | None = None
    sentiment_score: float | None = None
    emotion: str | None = None
    urgency: float | None = None
    escalation_risk: bool | None = None
    needs_review: bool | None = None


@dataclass
class Overview:
    """Everything the overview page shows, aggregated in DuckDB."""

    kpis: KPIs = field(default_factory=KPIs)
    bucket: Literal["day", "hour"] = "day"
    by_channel: dict[str, list[tuple[datetime, int]]] = field(default_factory=dict)
    region_level: Literal["province", "city", "district"] = "province"
    by_region: list[tuple[str | None, int]] = field(default_factory=list)
    region_trend: dict[str | None, list[int]] = field(default_factory=dict)
    by_scenario: dict[str, dict[str, int]] = field(default_factory=dict)
    sentiment_trend: dict[str, list[tuple[datetime, int]]] = field(default_factory=dict)
    latest: list[VoiceRow] = field(default_factory=list)
    quarantine_by_kind: list[tuple[str, int]] = field(default_factory=list)
    has_readings: bool = False
    #: First local day of a period pill's window (``days=N``), as the overview read it.
    period_from: date | None = None


@dataclass
class VoicePage:
    """One page of filtered voices."""

    rows: list[VoiceRow]
    total: int
    page: int
    per_page: int
    has_readings: bool

    @property
    def pages(self) -> int:
        """Return the number of pages (at least 1)."""
        return max(1, -(-self.total // self.per_page))


@dataclass
class Facets:
    """Distinct values offered in the filter form."""

    channels: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    provinces: list[str] = field(default_factory=list)
    cities: list[str] = field(default_factory=list)
    districts: list[str] = field(default_factory=list)
    scenarios: list[str] = field(default_factory=list)


@dataclass
class ReadingRow:
    """One reading of a voice (any model version, or a human correction)."""

    read_at: datetime
    model_version: str | None
    scenario: str | None
    subcategory: str | None
    scenario_confidence: float | None
    scenario_source: str | None
    intent: str | None
    sentiment: str | None
    sentiment_score: float | None
    emotion: str | None
    urgency: float | None
    escalation_risk: bool | None
    urgency_triggers: list[str]
    needs_review: bool | None


@dataclass
class VoiceDetail:
    """A voice with its attributes, PII counts and every reading, newest first."""

    voice: VoiceRow
    source: str
    language: str | None
    occurred_at: datetime | None
    attributes: dict[str, str]
    pii_counts: dict[str, int]
    readings: list[ReadingRow]
