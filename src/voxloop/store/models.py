"""Declarative base shared by every domain's operational tables."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names so Alembic migrations are identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base class of all operational tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class PipelineState(Base):
    """Watermark of an incremental pipeline stage (e.g. last part file it has read)."""

    __tablename__ = "pipeline_state"

    stage: Mapped[str] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(default="{}")
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012
