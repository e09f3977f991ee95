"""The detect stage survives a crash on either side of its database commit."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pytest
from sqlalchemy import func, select

from voxloop.config import Settings
from voxloop.detect import service as detect_service
from voxloop.detect.models import ProblemMember
from voxloop.detect.series import load_counts
from voxloop.store.service import make_engine, make_sessionmaker


@pytest.fixture(scope="module")
def voices_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from voxloop.demo.generator import generate_operator

    out = tmp_path_factory.mktemp("op")
    generate_operator(customers=1500, days=14, seed=5, out_dir=out)
    return out / "voices.jsonl"


def _ingested(home: Path, voices_file: Path) -> Settings:
    from voxloop.ingest.service import ingest_path
    from voxloop.store.service import migrate

    settings = Settings(home=home, env="test", secret_key="test-secret-key")
    migrate(settings)
    ingest_path(settings=settings, path=voices_file, kind=None, mapping=None)
    return settings


def _totals(settings: Settings) -> tuple[int, int]:
    counts = load_counts(
        detect_service.state_dir(settings) / f"counts_{detect_service.STAGE_GRANULARITY}.parquet"
    )
    with make_sessionmaker(make_engine(settings))() as s:
        members = s.scalar(select(func.count()).select_from(ProblemMember)) or 0
    return int(pc.sum(counts["count"]).as_py() or 0), int(members)


def test_crash_before_commit_counts_nothing_twice(
    tmp_path: Path, voices_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = _ingested(tmp_path / "clean", voices_file)
    detect_service.detect_stage(settings=clean)
    expected = _totals(clean)
    assert expected[0] > 0 and expected[1] > 0

    crashed = _ingested(tmp_path / "crashed", voices_file)

    def die(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed before the commit")

    # Series, detector and grouper files are written by now; the commit never happens.
    with monkeypatch.context() as m:
        m.setattr(detect_service, "_save_state", die)
        with pytest.raises(RuntimeError):
            detect_service.detect_stage(settings=crashed)
    assert list(detect_service.state_dir(crashed).glob("*.pending-*"))
    detect_service.detect_stage(settings=crashed)
    assert _totals(crashed) == expected
    assert not list(detect_service.state_dir(crashed).glob("*.pending-*"))


def test_crash_after_commit_publishes_on_next_run(
    tmp_path: Path, voices_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = _ingested(tmp_path / "clean", voices_file)
    detect_service.detect_stage(settings=clean)
    expected = _totals(clean)

    crashed = _ingested(tmp_path / "crashed", voices_file)
    real_settle = detect_service._settle_pending
    calls = {"n": 0}

    def settle_then_die(folder: Path, committed: str | None) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the publish right after the commit
            raise RuntimeError("killed after the commit")
        real_settle(folder, committed)

    with monkeypatch.context() as m:
        m.setattr(detect_service, "_settle_pending", settle_then_die)
        with pytest.raises(RuntimeError):
            detect_service.detect_stage(settings=crashed)
    # The rows are committed and the files still pending: the next run publishes them
    # instead of counting the same parts again.
    assert detect_service.detect_stage(settings=crashed)["voices"] == 0
    assert _totals(crashed) == expected
