"""Problem grouping (check suite over registered groupers), the detect stage, API and pages."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import admin_client
from voxloop.config import Settings
from voxloop.detect.models import Alert, Problem, ProblemEdit, ProblemMember
from voxloop.detect.problems import GROUPERS, keywords, place_words, title_for
from voxloop.detect.service import detect_stage, merge_problems, problem_state, split_problem
from voxloop.errors import ConflictError, NotFoundError
from voxloop.store.service import make_engine, make_sessionmaker

THEMES = {
    "BILL": [
        "我这个月被扣了19.9元的视频彩铃尊享包，我从来没订过",
        "刚发现被扣19.9元，业务名称视频彩铃尊享包，赶紧给我退",
        "不明扣费19.9元，是个叫视频彩铃尊享包的东西，请核实",
        "账单上多了一笔国际漫游费，我根本没出过国",
        "没出国却收了国际漫游费，账单明细看不懂",
    ],
    "HBB": [
        "从昨晚开始家里宽带就上不了网，光猫LOS灯亮红灯",
        "家里宽带光猫LOS灯亮红灯，上不了网，赶紧修",
        "宽带报装7天了还没人上门安装",
        "报装宽带一周了都没有师傅上门安装",
    ],
}


def _batch() -> tuple[list[str], list[str], list[str]]:
    texts, blocks, ids = [], [], []
    for scen, items in THEMES.items():
        for k, text in enumerate(items):
            texts.append(text)
            blocks.append(scen)
            ids.append(f"{scen}-{k}")
    # An exact duplicate of an earlier voice must land in the same problem.
    texts.append(THEMES["BILL"][0])
    blocks.append("BILL")
    ids.append("dup")
    return texts, blocks, ids


@pytest.mark.parametrize("name", sorted(GROUPERS))
def test_grouper_contract(name: str, tmp_path: Path) -> None:
    """Shared check suite: stored params, determinism, save/load, near-duplicates, blocks."""
    cls = GROUPERS[name]
    g = cls()
    assert not any(k.endswith("_") for k in vars(g))
    texts, blocks, ids = _batch()
    got, sims = g.partial_fit_assign(texts, blocks, ids)
    again, _ = cls().partial_fit_assign(texts, blocks, ids)
    assert got == again  # deterministic
    assert got[-1] == got[0]  # duplicate
    by = dict(zip(ids, got, strict=True))
    assert by["BILL-0"] == by["BILL-1"] == by["BILL-2"]
    assert by["BILL-3"] == by["BILL-4"] != by["BILL-0"]
    assert by["HBB-0"] == by["HBB-1"] != by["HBB-2"]
    assert not set(got[:5]) & set(got[5:9])  # blocks never share a problem
    assert all(0.0 <= s <= 1.0 + 1e-9 for s in sims)
    path = tmp_path / "g.npz"
    g.save(path)
    clone = cls.load(path)
    assert clone.config_version == g.config_version
    more = ["视频彩铃尊享包扣了我19.9元，没订过", "光猫LOS灯红了，宽带上不了网"]
    a, _ = g.partial_fit_assign(more, ["BILL", "HBB"], ["n1", "n2"])
    b, _ = clone.partial_fit_assign(more, ["BILL", "HBB"], ["n1", "n2"])
    assert a == b == [by["BILL-0"], by["HBB-0"]]
    with pytest.raises(ValueError, match="same length"):
        g.partial_fit_assign(["x"], [], ["y"])


def test_keywords_and_title_use_the_voices_language() -> None:
    words = keywords(THEMES["BILL"][:3])
    assert "视频" in words or "彩铃" in words or "尊享" in words
    assert all(not w.isascii() or w.replace(".", "").isdigit() for w in words)
    en = keywords(["My bill shows roaming charges", "Roaming charges on my bill again"])
    assert en[:2] == ["bill", "roaming"] or set(en[:2]) == {"bill", "roaming"}
    assert title_for("BILL", ["彩铃", "扣费"]) == "BILL · 彩铃 扣费"


def test_keywords_leave_place_names_out() -> None:
    """A title names the issue; places are shown apart (and only to callers in scope)."""
    texts = ["南京宽带断网三天", "南京市宽带又断网", "江苏南京宽带断网没人修"]
    assert "南京" in keywords(texts)
    places = place_words(["江苏省", "南京市", None])
    assert {"江苏", "南京", "江苏省", "南京市"} <= places
    words = keywords(texts, exclude=places)
    assert "南京" not in words and "江苏" not in words and "宽带" in words


def test_problem_states() -> None:
    today = date(2026, 10, 20)
    assert problem_state({}, today=today, first_seen=today, previous=None) == "resolved"
    daily = {"2026-10-20": 3}
    assert problem_state(daily, today=today, first_seen=today, previous=None) == "new"
    assert problem_state(daily, today=today, first_seen=today, previous="resolved") == "regressed"
    steady = {f"2026-10-{d:02d}": 1 for d in range(1, 21)}
    assert problem_state(steady, today=today, first_seen=date(2026, 10, 1), previous=None) == (
        "ongoing"
    )
    hot = {**steady, "2026-10-19": 6, "2026-10-20": 8}
    assert problem_state(hot, today=today, first_seen=date(2026, 10, 1), previous=None) == (
        "escalating"
    )


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from voxloop.demo.generator import generate_operator

    out = tmp_path_factory.mktemp("op")
    generate_operator(customers=8000, days=30, seed=3, out_dir=out)
    return out


def test_stage_alerts_groups_and_serves(tmp_path: Path, operator: Path) -> None:
    from voxloop.api.app import create_app
    from voxloop.ingest.service import ingest_path
    from voxloop.store.service import migrate

    # Dev mode with no users: the API admits the dev admin without a token.
    settings = Settings(home=tmp_path / "home", env="dev")
    migrate(settings)
    ingest_path(settings=settings, path=operator / "voices.jsonl", kind=None, mapping=None)
    summary = detect_stage(settings=settings)
    assert summary["voices"] > 1000 and summary["alerts"] >= 1
    assert detect_stage(settings=settings)["voices"] == 0  # incremental: nothing new
    truth = json.loads((operator / "ground_truth.json").read_text())
    sessions = make_sessionmaker(make_engine(settings))
    with sessions() as s:
        causes = [json.loads(a.values_json) for a in s.scalars(select(Alert))]
        n_members = len(s.scalars(select(ProblemMember)).all())
    planted = {(i["scenario"], i["city"]) for i in truth["incidents"]}
    assert planted & {(c.get("scenario"), c.get("city")) for c in causes}
    assert n_members == summary["voices"]

    client = admin_client(create_app(settings))
    alerts = client.get("/api/v1/alerts").json()
    assert alerts and "root_cause" in alerts[0] and "typical_cases" in alerts[0]
    r = client.post(f"/api/v1/alerts/{alerts[0]['id']}/state", json={"state": "acknowledged"})
    assert r.status_code == 200 and r.json()["state"] == "acknowledged"
    assert (
        client.post(f"/api/v1/alerts/{alerts[0]['id']}/state", json={"state": "x"}).status_code
        == 422
    )
    problems = client.get("/api/v1/problems?limit=500").json()
    assert problems and all(p["config_version"] for p in problems)
    detail = client.get(f"/api/v1/problems/{problems[0]['id']}").json()
    assert detail["voice_ids"] and "daily" in detail
    assert client.get("/api/v1/problems/p-nope").status_code == 404
    assert client.get("/api/v1/problems?state=bogus").status_code == 422
    page = client.get("/problems?lang=en")
    assert page.status_code == 200 and "Surge alerts" in page.text
    assert client.get(f"/problems/{problems[0]['id']}").status_code == 200
    # Largest first: the order the operator triages in.
    largest = client.get("/api/v1/problems?sort=voices&limit=20").json()
    sizes = [p["n_voices"] for p in largest]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] >= max(p["n_voices"] for p in problems)
    assert client.get("/api/v1/problems?sort=size").status_code == 422
    by_size = client.get("/problems?lang=en&sort=voices").text
    first_row = by_size.split('data-problem="', 1)[1].split('"', 1)[0]
    assert first_row == largest[0]["id"] and "Most voices" in by_size


def _problem(s: object, pid: str, voices: list[str]) -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 10, 1, tzinfo=UTC)
    s.add(  # type: ignore[attr-defined]
        Problem(
            id=pid,
            title=pid,
            keywords_json="[]",
            state="ongoing",
            config_version="cfg",
            n_voices=len(voices),
            n_customers=len(voices),
            first_seen=now,
            last_seen=now,
            typical_json="[]",
            daily_json=json.dumps({"2026-10-01": len(voices)}),
            regions_json="{}",
            updated_at=now,
        )
    )
    for v in voices:
        s.add(ProblemMember(voice_id=v, problem_id=pid, source="auto", similarity=1.0))  # type: ignore[attr-defined]


def test_merge_and_split_are_remembered(any_db_settings: Settings) -> None:
    from voxloop.store.service import migrate

    migrate(any_db_settings)
    sessions = make_sessionmaker(make_engine(any_db_settings))
    with sessions.begin() as s:
        _problem(s, "p-a", ["v1", "v2"])
        _problem(s, "p-b", ["v3"])
    with sessions.begin() as s:
        merged = merge_problems(session=s, target="p-a", sources=["p-b"], actor="ana")
        assert merged.n_voices == 3
        with pytest.raises(ConflictError):
            merge_problems(session=s, target="p-a", sources=["p-a"])
        with pytest.raises(NotFoundError):
            merge_problems(session=s, target="p-a", sources=["p-zz"])
    with sessions.begin() as s:
        new = split_problem(session=s, problem_id="p-a", voice_ids=["v3"], actor="ana")
        with pytest.raises(NotFoundError, match="not in problem"):
            split_problem(session=s, problem_id="p-a", voice_ids=["v9"])
        new_id = new.id
    with sessions() as s:
        assert s.get(Problem, "p-b").merged_into == "p-a"  # type: ignore[union-attr]
        member = s.get(ProblemMember, "v3")
        assert member is not None and member.problem_id == new_id and member.source == "human"
        kinds = [e.kind for e in s.scalars(select(ProblemEdit).order_by(ProblemEdit.id))]
        assert kinds == ["merge", "split"]


def test_scenario_comes_from_the_latest_reading(settings: Settings, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    import pyarrow as pa

    from voxloop.detect.service import read_voices
    from voxloop.ingest.service import ingest_path
    from voxloop.store.service import migrate, part_files, write_part

    migrate(settings)
    path = tmp_path / "voices.jsonl"
    rows = [
        {
            "id": f"v{i}",
            "source": "t",
            "kind": "complaint",
            "received_at": "2026-09-01T10:00:00+08:00",
            "channel": "app",
            "text": f"宽带又断了 {i}",
            "attributes": {"scenario": "HBB"},
        }
        for i in range(3)
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), "utf-8")
    ingest_path(settings=settings, path=path, kind=None, mapping=None)
    at = datetime(2026, 9, 2, tzinfo=UTC)
    write_part(
        settings,
        "readings",
        pa.table(
            {
                "voice_id": ["v0", "v0"],
                "scenario": ["MNET", "BILL"],
                "read_at": pa.array([at, at.replace(day=3)], pa.timestamp("us", tz="UTC")),
            }
        ),
    )
    table = read_voices(settings=settings, files=part_files(settings, "voices"))
    got = dict(zip(table["id"].to_pylist(), table["scenario"].to_pylist(), strict=True))
    assert got == {"v0": "BILL", "v1": "HBB", "v2": "HBB"}


def test_planted_pair_ari_counts_routine_voices_mixed_in() -> None:
    from sklearn.metrics import adjusted_rand_score

    from voxloop.detect.evaluation import planted_pair_ari

    planted = {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "b2": "B"}
    voices = ["a1", "a2", "a3", "b1", "b2", "r1", "r2", "r3"]
    # Over planted voices alone it is the usual ARI.
    only = ["x", "x", "y", "z", "z"]
    assert planted_pair_ari(planted=planted, voice_ids=voices[:5], problem_ids=only) == (
        pytest.approx(adjusted_rand_score([planted[v] for v in voices[:5]], only))
    )
    clean = ["x", "x", "x", "y", "y", "r", "r", "s"]
    assert planted_pair_ari(planted=planted, voice_ids=voices, problem_ids=clean) == 1.0
    # Routine voices grouped together among themselves do not count ...
    apart = ["x", "x", "x", "y", "y", "r", "r", "r"]
    assert planted_pair_ari(planted=planted, voice_ids=voices, problem_ids=apart) == 1.0
    # ... but routine voices grouped with an incident's voices do.
    mixed = ["x", "x", "x", "y", "y", "x", "y", "s"]
    assert planted_pair_ari(planted=planted, voice_ids=voices, problem_ids=mixed) < 0.8
    # One problem per scenario no longer scores 1.0.
    lumped = ["x"] * 3 + ["y"] * 2 + ["x", "y", "y"]
    assert planted_pair_ari(planted=planted, voice_ids=voices, problem_ids=lumped) < 0.8


def test_grouper_ignores_agent_script_and_uses_codes() -> None:
    g = GROUPERS["leader_tfidf"]()
    assert g.clean(["坐席：您好，请问有什么可以帮您 客户：宽带断了 坐席：好的"]) == ["宽带断了"]
    # Routine English voices with varied amounts: their wording is common, so it weighs
    # little once document frequencies are learnt.
    routine = [f"I was charged {a}元 for something I never ordered" for a in range(20, 60)]
    texts = [
        *routine,
        "我这个月被扣了19.9元的视频彩铃尊享包，我从来没订过",
        "刚发现被扣19.9元，业务名称视频彩铃尊享包，赶紧给我退",
        "不明扣费19.9元，是个叫视频彩铃尊享包的东西",
        "I was charged 19.9元 for 视频彩铃尊享包 which I never ordered",
    ]
    ids, _ = g.partial_fit_assign(texts, ["BILL"] * len(texts), [f"v{i}" for i in range(44)])
    # The amount and the service name tie the English voice to the incident's voices.
    assert ids[-1] == ids[-2] == ids[-3] == ids[-4]
    assert ids[-1] not in set(ids[:40])
