"""Engines, migrations and the Parquet lake."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from voxloop.config import Settings

#: Domains that own an Alembic branch under ``voxloop/<domain>/migrations/versions``.
MIGRATION_DOMAINS = ("store", "ingest", "understand", "detect", "act", "analyze", "assist")

#: PostgreSQL connections a process keeps open, and how many more it may open under a burst.
#: Overflow connections are closed when returned, so a pool smaller than the requests a
#: server runs at once (up to 40 thread-pool workers) keeps opening new ones: 271 new
#: sessions in 15 s of the act bench at 20 (+20), 101 at 30 (+10).  Two workers then hold
#: at most 80 of PostgreSQL's default 100 connections.
POOL_SIZE = 30
POOL_OVERFLOW = 10


def make_engine(settings: Settings) -> Engine:
    """Create the operational-store engine (SQLite in WAL mode by default, or PostgreSQL)."""
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        settings.home.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the server read while a CLI ingest writes; busy_timeout makes
            # concurrent writers wait instead of failing with "database is locked".
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    # One pooled connection per request the server runs at once: with the default 5 (+10
    # overflow) a loaded server queued for connections and kept opening and closing the
    # overflow ones.  No pre-ping (a round trip per checkout): a connection that died with
    # a restarted PostgreSQL fails its one request and SQLAlchemy then renews the pool.
    return create_engine(url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory bound to ``engine``."""
    return sessionmaker(engine, expire_on_commit=False)


def _version_locations() -> list[str]:
    root = Path(__file__).resolve().parent.parent
    return [
        str(root / domain / "migrations" / "versions")
        for domain in MIGRATION_DOMAINS
        if (root / domain / "migrations" / "versions").is_dir()
    ]


def alembic_config(settings: Settings) -> Any:
    """Build the Alembic configuration: one branch per domain, all upgraded to ``heads``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).resolve().parent / "migrations"))
    cfg.set_main_option("version_locations", " ".join(_version_locations()))
    cfg.set_main_option("path_separator", "space")
    cfg.attributes["voxloop_url"] = settings.resolved_database_url
    return cfg


def migrate(settings: Settings) -> None:
    """Upgrade the operational store to the newest schema of every domain."""
    from alembic import command

    settings.home.mkdir(parents=True, exist_ok=True)
    # Several processes may start at once; only one runs migrations at a time.
    with FileLock(str(settings.home / ".migrate.lock")):
        command.upgrade(alembic_config(settings), "heads")


# ---------------------------------------------------------------------------
# Parquet lake: each table is a folder of immutable part files, written whole and
# renamed into place, so readers in other processes never see a partial file and
# never hold a lock.


def table_dir(settings: Settings, table: str) -> Path:
    """Return the folder holding ``table``'s part files."""
    return settings.lake_dir / table


@contextlib.contextmanager
def writer_lock(settings: Settings, table: str) -> Iterator[None]:
    """Serialise writers of one lake table across processes."""
    path = table_dir(settings, table)
    path.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path / ".writer.lock")):
        yield


def write_part(
    settings: Settings,
    table: str,
    data: pa.Table,
    *,
    use_dictionary: bool | list[str] = True,
) -> Path | None:
    """Write ``data`` as one new immutable part file of ``table``; return its path.

    ``use_dictionary`` goes to ``pyarrow.parquet.write_table``: a list names the only
    columns to dictionary-encode (unique columns gain nothing from a dictionary).
    """
    if data.num_rows == 0:
        return None
    folder = table_dir(settings, table)
    folder.mkdir(parents=True, exist_ok=True)
    # Time-ordered names keep "write order" == "name order" for readers and dedup.
    name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = folder / f".{name}.tmp"
    pq.write_table(data, tmp, compression="zstd", use_dictionary=use_dictionary)
    os.replace(tmp, folder / name)
    return folder / name


def part_files(settings: Settings, table: str) -> list[Path]:
    """List ``table``'s part files in write order."""
    folder = table_dir(settings, table)
    if not folder.is_dir():
        return []
    return sorted(folder.glob("part-*.parquet"))


def lake_connection(settings: Settings, tables: tuple[str, ...] | None = None) -> Any:
    """Open an in-memory DuckDB connection with one view per lake table."""
    con = duckdb.connect(":memory:")
    root = settings.lake_dir
    if tables is not None:
        names = tables
    elif root.is_dir():
        names = tuple(p.name for p in sorted(root.iterdir()) if p.is_dir())
    else:
        names = ()
    for name in names:
        # Lake folders become SQL views: plain identifiers only, paths as escaped literals.
        if name.isidentifier() and part_files(settings, name):
            glob = str(table_dir(settings, name) / "part-*.parquet").replace("'", "''")
            con.execute(
                f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{glob}', union_by_name=true)"
            )
    return con
