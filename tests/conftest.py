"""Shared fixtures: isolated settings, real data paths, a throwaway PostgreSQL database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from voxloop.config import Settings

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("VOXLOOP_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data"
# Pushes in most tests check the ingest result alone; the background post-ingest run is
# tested where a test turns it on explicitly (tests/test_push_stages.py).
os.environ.setdefault("VOXLOOP_STAGES_AFTER_PUSH", "0")
PG_ADMIN_URL = os.environ.get("VOXLOOP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def shared_file(*parts: str) -> Path:
    """Return a path under ../shared/data, skipping the test with a reason when it is absent."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with a fresh data directory and SQLite store."""
    return Settings(home=tmp_path / "home", env="test", secret_key="test-secret-key")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """Create a throwaway database on the local PostgreSQL server; drop it afterwards."""
    psycopg = pytest.importorskip("psycopg")
    name = f"voxloop_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except Exception as exc:  # pragma: no cover - depends on the machine
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (
            PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
            + f"/{name}"
        )
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for the operational store on SQLite and on the real local PostgreSQL."""
    if request.param == "sqlite":
        return Settings(home=tmp_path / "home", env="test", secret_key="test-secret-key")
    url = request.getfixturevalue("pg_url")
    return Settings(
        home=tmp_path / "home", env="test", secret_key="test-secret-key", database_url=url
    )


def admin_client(app: Any) -> Any:
    """Return a TestClient for ``app`` authenticated as a fresh admin with an API token."""
    from fastapi.testclient import TestClient

    from voxloop.act.access import add_user, create_token

    username = f"admin-{uuid.uuid4().hex[:8]}"
    with app.state.sessionmaker.begin() as session:
        add_user(session=session, username=username, role="admin", actor="test")
    with app.state.sessionmaker.begin() as session:
        token = create_token(session=session, username=username, actor="test")
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})
