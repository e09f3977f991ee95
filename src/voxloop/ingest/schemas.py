"""Canonical data model: pydantic records at the edges, Arrow schemas inside the pipeline.

See ``docs/data-model.md``.  Customer identifiers in analytical data are pseudonyms
(keyed hash); the real identifier lives only in the operational store.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field


class VoiceKind(StrEnum):
    """What sort of customer voice a record is."""

    complaint = "complaint"
    call_transcript = "call_transcript"
    chat = "chat"
    ticket = "ticket"
    app_review = "app_review"
    social_post = "social_post"
    survey_comment = "survey_comment"


class Channel(StrEnum):
    """Where a voice came in; unknown channels are kept as ``other``."""

    hotline_10086 = "hotline_10086"
    supervision_10080 = "supervision_10080"
    app = "app"
    mini_program = "mini_program"
    store = "store"
    web = "web"
    social = "social"
    email = "email"
    sms = "sms"
    regulator_12300 = "regulator_12300"
    consumer_12315 = "consumer_12315"
    media = "media"
    other = "other"


class Touchpoint(StrEnum):
    """Touchpoint a survey response rates."""

    store = "store"
    hotline = "hotline"
    app = "app"
    installation_repair = "installation_repair"
    complaint_handling = "complaint_handling"
    network = "network"
    billing = "billing"
    other = "other"


class CustomerStatus(StrEnum):
    """Whether a customer is still with the operator."""

    active = "active"
    churned = "churned"


class RecordKind(StrEnum):
    """The four record kinds that can be ingested."""

    voice = "voice"
    survey = "survey"
    customer = "customer"
    event = "event"


class Region(BaseModel):
    """Administrative region, coarse to fine."""

    model_config = ConfigDict(extra="forbid")

    province: str | None = None
    city: str | None = None
    district: str | None = None


class Voice(BaseModel):
    """One customer voice: a complaint, transcript, chat, ticket, review, post or comment."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=200)
    kind: VoiceKind
    received_at: datetime
    occurred_at: datetime | None = None
    customer_id: str | None = None
    region: Region = Field(default_factory=Region)
    channel: Channel = Channel.other
    language: str | None = Field(default=None, description="ISO 639-1; detected when absent.")
    text: str = Field(min_length=1)
    attributes: dict[str, str] = Field(default_factory=dict)


class SurveyResponse(BaseModel):
    """One touchpoint rating (CSAT / NPS instant evaluation)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    customer_id: str | None = None
    touchpoint: Touchpoint
    occurred_at: datetime
    overall: float = Field(ge=0, le=10)
    nps: int | None = Field(default=None, ge=0, le=10)
    factors: dict[str, float] = Field(default_factory=dict)
    comment: str | None = None
    region: Region = Field(default_factory=Region)
    attributes: dict[str, str] = Field(default_factory=dict)


class Plan(BaseModel):
    """A customer's tariff plan."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    monthly_fee: float | None = Field(default=None, ge=0)
    data_gb: float | None = Field(default=None, ge=0)
    voice_minutes: float | None = Field(default=None, ge=0)
    is_5g: bool | None = None


class Customer(BaseModel):
    """A customer profile."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    region: Region = Field(default_factory=Region)
    plan: Plan = Field(default_factory=Plan)
    tenure_months: float | None = Field(default=None, ge=0)
    arpu: float | None = Field(default=None, ge=0)
    segment: str | None = None
    status: CustomerStatus = CustomerStatus.active
    churned_at: datetime | None = None
    attributes: dict[str, str] = Field(default_factory=dict)


class JourneyEvent(BaseModel):
    """Something that happened on a customer's journey (plan change, bill, outage...)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    customer_id: str | None = None
    type: str = Field(min_length=1, max_length=100)
    occurred_at: datetime
    channel: Channel | None = None
    region: Region = Field(default_factory=Region)
    attributes: dict[str, str] = Field(default_factory=dict)


class IngestResult(BaseModel):
    """Counts of one ingest run; ``stored + quarantined + duplicates == read``."""

    read: int = 0
    stored: int = 0
    quarantined: int = 0
    duplicates: int = 0
    batch_id: str | None = Field(default=None, description="Lineage id of this run.")

    def add(self, other: IngestResult) -> IngestResult:
        """Return the sum of two runs' counts (keeps this run's ``batch_id``)."""
        return IngestResult(
            read=self.read + other.read,
            stored=self.stored + other.stored,
            quarantined=self.quarantined + other.quarantined,
            duplicates=self.duplicates + other.duplicates,
            batch_id=self.batch_id or other.batch_id,
        )


# ---------------------------------------------------------------------------
# Arrow schemas of the lake tables (one row per record, flattened for columnar scans).

TS = pa.timestamp("us", tz="UTC")
STR_MAP = pa.map_(pa.string(), pa.string())

#: Columns every lake table carries for lineage and deduplication.
LINEAGE_FIELDS = [
    pa.field("content_hash", pa.string(), nullable=False),
    pa.field("ingested_at", TS, nullable=False),
    pa.field("batch_id", pa.string(), nullable=False),
    pa.field("source_file", pa.string()),
    pa.field("source_row", pa.int64()),
]

REGION_FIELDS = [
    pa.field("province", pa.string()),
    pa.field("city", pa.string()),
    pa.field("district", pa.string()),
]

VOICE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("received_at", TS, nullable=False),
        pa.field("occurred_at", TS),
        pa.field("customer_id", pa.string()),
        *REGION_FIELDS,
        pa.field("channel", pa.string(), nullable=False),
        pa.field("language", pa.string()),
        pa.field("text", pa.string(), nullable=False),
        pa.field("attributes", STR_MAP),
        # Placeholder type -> count of PII spans masked in ``text`` before storage.
        pa.field("pii_counts", pa.map_(pa.string(), pa.int32())),
        *LINEAGE_FIELDS,
    ]
)

SURVEY_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("customer_id", pa.string()),
        pa.field("touchpoint", pa.string(), nullable=False),
        pa.field("occurred_at", TS, nullable=False),
        pa.field("overall", pa.float64(), nullable=False),
        pa.field("nps", pa.int8()),
        pa.field("factors", pa.map_(pa.string(), pa.float64())),
        pa.field("comment", pa.string()),
        *REGION_FIELDS,
        pa.field("attributes", STR_MAP),
        *LINEAGE_FIELDS,
    ]
)

CUSTOMER_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        *REGION_FIELDS,
        pa.field("plan_name", pa.string()),
        pa.field("plan_monthly_fee", pa.float64()),
        pa.field("plan_data_gb", pa.float64()),
        pa.field("plan_voice_minutes", pa.float64()),
        pa.field("plan_is_5g", pa.bool_()),
        pa.field("tenure_months", pa.float64()),
        pa.field("arpu", pa.float64()),
        pa.field("segment", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("churned_at", TS),
        pa.field("attributes", STR_MAP),
        *LINEAGE_FIELDS,
    ]
)

EVENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("customer_id", pa.string()),
        pa.field("type", pa.string(), nullable=False),
        pa.field("occurred_at", TS, nullable=False),
        pa.field("channel", pa.string()),
        *REGION_FIELDS,
        pa.field("attributes", STR_MAP),
        *LINEAGE_FIELDS,
    ]
)

#: Lake table name and Arrow schema per record kind.
LAKE_TABLES: dict[RecordKind, tuple[str, pa.Schema]] = {
    RecordKind.voice: ("voices", VOICE_SCHEMA),
    RecordKind.survey: ("surveys", SURVEY_SCHEMA),
    RecordKind.customer: ("customers", CUSTOMER_SCHEMA),
    RecordKind.event: ("events", EVENT_SCHEMA),
}

#: Rows that could not be stored, with the reason and the raw record (PII masked).
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("kind", pa.string(), nullable=False),
        pa.field("source_file", pa.string()),
        pa.field("source_row", pa.int64()),
        pa.field("field", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("raw", pa.string()),
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("quarantined_at", TS, nullable=False),
    ]
)

#: Dedup keys of one lake part: 128-bit hashes of ``id`` and of ``content_hash``.
KEYS_SCHEMA = pa.schema(
    [
        pa.field("id_hi", pa.uint64(), nullable=False),
        pa.field("id_lo", pa.uint64(), nullable=False),
        pa.field("ch_hi", pa.uint64(), nullable=False),
        pa.field("ch_lo", pa.uint64(), nullable=False),
    ]
)

#: Pydantic model per record kind (HTTP push and tests).
RECORD_MODELS: dict[RecordKind, type[BaseModel]] = {
    RecordKind.voice: Voice,
    RecordKind.survey: SurveyResponse,
    RecordKind.customer: Customer,
    RecordKind.event: JourneyEvent,
}
