"""Pydantic records of the assist domain."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field


class KbEntry(BaseModel):
    """One knowledge-base entry (a FAQ question and its answer) at one version."""

    entry_id: str = Field(min_length=1, max_length=200)
    question: str = Field(min_length=1, max_length=2_000)
    answer: str = Field(min_length=1, max_length=20_000)
    region: str | None = Field(default=None, description="Region the entry applies to; None: all.")
    valid_from: date | None = None
    valid_to: date | None = None
    version: int = Field(default=1, ge=1)


class KbImportResult(BaseModel):
    """What an import did to the knowledge base."""

    source: str
    read: int
    added: int
    updated: int
    unchanged: int


class AnswerRequest(BaseModel):
    """A customer question to answer from the knowledge base."""

    question: str = Field(min_length=1, max_length=2_000)
    region: str | None = Field(default=None, max_length=100)
    on: date | None = Field(default=None, description="Date the answer must be valid on.")


class Candidate(BaseModel):
    """A knowledge-base entry retrieved for a question, with its scores."""

    entry_id: str
    version: int
    question: str
    score: float = Field(description="Reciprocal-rank-fusion score.")
    similarity: float = Field(description="Encoder cosine of the query and the entry question.")


class Answer(BaseModel):
    """The assistant's answer, quoting its source entry, or a hand-over to a human."""

    known: bool
    answer: str | None
    entry_id: str | None
    version: int | None
    confidence: float
    routed_to_human: bool
    candidates: list[Candidate]
