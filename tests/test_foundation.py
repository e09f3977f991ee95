"""Settings, migrations and the lake."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pydantic import ValidationError

from voxloop.config import Settings
from voxloop.store.service import lake_connection, make_engine, migrate, write_part


def test_placeholder_secret_refused_outside_dev(tmp_path):
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(home=tmp_path, env="prod")
    assert Settings(home=tmp_path, env="dev").secret_key


def test_env_vars_are_read(monkeypatch, tmp_path):
    monkeypatch.setenv("VOXLOOP_HOME", str(tmp_path / "x"))
    monkeypatch.setenv("VOXLOOP_PORT", "8123")
    s = Settings()
    assert s.home == tmp_path / "x"
    assert s.port == 8123


def test_migrations_run_on_both_databases(any_db_settings):
    migrate(any_db_settings)
    migrate(any_db_settings)  # idempotent
    engine = make_engine(any_db_settings)
    from sqlalchemy import inspect

    assert "pipeline_state" in inspect(engine).get_table_names()
    engine.dispose()


def test_lake_parts_are_visible_to_readers(settings):
    write_part(settings, "things", pa.table({"a": [1, 2]}))
    write_part(settings, "things", pa.table({"a": [3]}))
    con = lake_connection(settings)
    assert con.execute("SELECT sum(a) FROM things").fetchone() == (6,)
