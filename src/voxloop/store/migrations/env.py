"""Alembic environment: runs every domain's migration branch against the configured URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

config = context.config
url: str = config.attributes.get("voxloop_url") or config.get_main_option("sqlalchemy.url") or ""

connectable = create_engine(url)
with connectable.connect() as connection:
    context.configure(connection=connection, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()
connectable.dispose()
