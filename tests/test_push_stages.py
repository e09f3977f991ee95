"""HTTP pushes run the post-ingest stages in the server's background, coalesced."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.conftest import admin_client
from tests.test_ingest import _voice
from voxloop.config import Settings
from voxloop.pipeline.service import pipeline_stages
from voxloop.store.service import lake_connection


def _read_ids(settings: Settings) -> set[str]:
    con = lake_connection(settings, ("readings",))
    try:
        return {r[0] for r in con.execute("SELECT DISTINCT voice_id FROM readings").fetchall()}
    finally:
        con.close()


def test_pushed_voices_get_read_in_the_background(tmp_path: Path) -> None:
    from voxloop.api.app import create_app

    settings = Settings(
        home=tmp_path / "home", env="test", secret_key="k" * 16, stages_after_push=True
    )
    app = create_app(settings)
    client = admin_client(app)
    first = client.post("/api/v1/ingest/voice", json=[_voice(i) for i in range(5)])
    assert first.status_code == 200 and first.json()["stages_scheduled"] is True
    # A second push while the first run may still be going is coalesced, not lost.
    second = client.post("/api/v1/ingest/voice", json=[_voice(i) for i in range(5, 8)])
    assert second.json()["stages_scheduled"] is True
    assert app.state.stages.wait_idle(timeout=300)
    status = client.get("/api/v1/ingest/stages").json()
    assert status["last_error"] is None and 1 <= status["runs"] <= 2
    assert status["running"] is False
    assert _read_ids(settings) == {f"p{i}" for i in range(8)}
    summary = app.state.stages.last_summary
    expected = {name for name, _stage in pipeline_stages()}
    assert summary is not None and set(summary) == expected

    # A push that stores nothing (all duplicates) schedules nothing.
    again = client.post("/api/v1/ingest/voice", json=[_voice(1)])
    assert again.json()["duplicates"] == 1 and again.json()["stages_scheduled"] is False


def test_pushes_leave_stages_alone_when_switched_off(settings: Settings) -> None:
    from voxloop.api.app import create_app

    off = settings.model_copy(update={"stages_after_push": False})
    app = create_app(off)
    client = admin_client(app)
    res = client.post("/api/v1/ingest/voice", json=[_voice(1)])
    assert res.json()["stored"] == 1 and res.json()["stages_scheduled"] is False
    assert client.get("/api/v1/ingest/stages").json()["runs"] == 0


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_stage_worker_recovers_from_a_dying_run(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed by a BaseException must not leave later pushes without a worker."""
    from voxloop.pipeline import service as pipeline
    from voxloop.pipeline.service import StageRunner

    go = threading.Event()

    def dies(*, settings: Settings) -> dict[str, object]:
        go.wait(timeout=30)  # hold the run until the test holds the thread object
        raise SystemExit("worker killed")

    runner = StageRunner(settings=settings)
    monkeypatch.setattr(pipeline, "run_stages", dies)
    runner.request()
    thread = runner._thread
    assert thread is not None
    go.set()
    thread.join(timeout=30)  # the thread's exception is reported within this test
    assert runner.wait_idle(timeout=30) and runner.status()["running"] is False
    monkeypatch.setattr(pipeline, "run_stages", lambda *, settings: {"ok": True})
    runner.request()
    assert runner.wait_idle(timeout=30)
    assert runner.last_summary == {"ok": True} and runner.runs == 1
