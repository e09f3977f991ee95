"""Commitment supervision over journey events: each rule's ok / violation / pending cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from voxloop.act import supervision
from voxloop.ingest.schemas import EVENT_SCHEMA

T0 = datetime(2026, 9, 1, 1, 0, tzinfo=UTC)  # 09:00 Shanghai


class Events:
    def __init__(self):
        self.rows = []

    def add(self, eid, customer, kind, hours, channel=None, **attrs):
        self.rows.append(
            {
                "id": eid,
                "customer_id": customer,
                "type": kind,
                "occurred_at": T0 + timedelta(hours=hours),
                "channel": channel,
                "attributes": list(attrs.items()),
                "province": "江苏" if customer < "k" else "广东",
                "city": None,
                "district": "玄武区" if customer < "c" else None,
            }
        )

    def connection(self):
        fields = [EVENT_SCHEMA.field(n) for n in ("id", "customer_id", "type", "occurred_at")]
        fields += [
            EVENT_SCHEMA.field(n) for n in ("channel", "attributes", "province", "city", "district")
        ]
        table = pa.Table.from_pylist(self.rows, schema=pa.schema(fields))
        con = duckdb.connect(":memory:")
        con.register("events_arrow", table)
        con.execute("CREATE VIEW events AS SELECT * FROM events_arrow")
        return con


def _status(checks, request_id):
    row = checks.filter(pc.equal(checks.column("request_event_id"), request_id)).to_pylist()
    assert len(row) == 1, request_id
    return row[0]["status"]


def build():
    ev = Events()
    # R6: on time, late, never done (deadline passed), contract-bound, pending at data end.
    ev.add("p1", "a", "plan_change_requested", 0)
    ev.add("p1d", "a", "plan_change_done", 47, request_id="p1")
    ev.add("p2", "b", "plan_change_requested", 0)
    ev.add("p2d", "b", "plan_change_done", 49, request_id="p2")
    ev.add("p3", "c", "plan_change_requested", 0)
    ev.add("p4", "d", "plan_change_requested", 0, contract_end="2026-09-05")
    ev.add("p4d", "d", "plan_change_done", 24 * 4 + 30, request_id="p4")
    ev.add("p5", "e", "plan_change_requested", 24 * 9)
    # R7: same interaction ok; different interaction = violation; app channel not checked;
    # ineligible not checked.
    ev.add("u1", "f", "unsubscribe_requested", 1, "hotline_10086", interaction_id="i1")
    ev.add(
        "u1d", "f", "unsubscribe_done", 1.1, "hotline_10086", interaction_id="i1", request_id="u1"
    )
    ev.add("u2", "g", "unsubscribe_requested", 1, "store", interaction_id="i2")
    ev.add("u2d", "g", "unsubscribe_done", 30, "store", interaction_id="i3", request_id="u2")
    ev.add("u3", "h", "unsubscribe_requested", 1, "app", interaction_id="i4")
    ev.add("u4", "i", "unsubscribe_requested", 1, "store", interaction_id="i5", eligible="false")
    # R8: same local day ok (23:00 local), next day violation.
    ev.add("b1", "j", "broadband_cancel_requested", 0)
    ev.add("b1d", "j", "broadband_cancel_done", 14, request_id="b1")
    ev.add("b2", "k", "broadband_cancel_requested", 0)
    ev.add("b2d", "k", "broadband_cancel_done", 16, request_id="b2")
    # Request and response sharing a request id of their own (generator style).
    ev.add("b3", "k2", "broadband_cancel_requested", 1, request_id="bc-9", eligible="true")
    ev.add("b3d", "k2", "broadband_cancel_done", 3, request_id="bc-9")
    # R4: reminder linked by customer (no request_id) ok; missing reminder violation.
    ev.add("o1", "l", "usage_over_plan", 2)
    ev.add("o1r", "l", "overage_reminder_sent", 2.5)
    ev.add("o2", "m", "usage_over_plan", 2)
    # R13: both in time; late first response; reply missing after 15 days.
    ev.add("c1", "n", "complaint_opened", 0)
    ev.add("c1f", "n", "complaint_first_response", 5, request_id="c1")
    ev.add("c1r", "n", "complaint_replied", 100, request_id="c1")
    ev.add("c2", "o", "complaint_opened", 0)
    ev.add("c2f", "o", "complaint_first_response", 60, request_id="c2")
    ev.add("c2r", "o", "complaint_replied", 100, request_id="c2")
    ev.add("c3", "p", "complaint_opened", 0)
    ev.add("c3f", "p", "complaint_first_response", 3, request_id="c3")
    ev.add("end", "z", "bill_issued", 24 * 20)
    return ev


def test_rules_classify_each_case():
    checks = supervision.check_events(build().connection())
    expected = {
        "p1": "ok",
        "p2": "violation",
        "p3": "violation",
        "p4": "ok",  # within 48 h of the contract end, although 126 h after the request
        "u1": "ok",
        "u2": "violation",
        "b1": "ok",
        "b2": "violation",
        "b3": "ok",
        "o1": "ok",
        "o2": "violation",
        "c1": "ok",
        "c2": "violation",
        "c3": "violation",
    }
    for request_id, status in expected.items():
        assert _status(checks, request_id) == status, request_id
    requests = set(checks.column("request_event_id").to_pylist())
    assert not requests & {"u3", "u4"}  # app channel and ineligible requests are not checked


def test_deadline_after_data_end_is_pending():
    ev = build()
    ev.rows = [r for r in ev.rows if r["id"] != "end"]
    checks = supervision.check_events(ev.connection())
    # Data now ends at p5 (day 9): c3's 15-day reply deadline has not come yet.
    assert _status(checks, "c3") == "pending"
    assert _status(checks, "p5") == "pending"


def test_summary_trend_and_violation_events():
    checks = supervision.check_events(build().connection())
    summary = {row["rule"]: row for row in supervision.compliance(checks)}
    # p5 (day 9, never done) is overdue by the data's end (day 20).
    assert summary["R6"]["checked"] == 5 and summary["R6"]["violations"] == 3
    assert summary["R6"]["compliance_rate"] == 0.4
    assert summary["R7"]["checked"] == 2
    found = {(v["rule"], v["customer_id"]) for v in supervision.violations(checks)}
    assert found == {
        ("R6", "b"),
        ("R6", "c"),
        ("R6", "e"),
        ("R7", "g"),
        ("R8", "k"),
        ("R4", "m"),
        ("R13", "o"),
        ("R13", "p"),
    }
    late = next(v for v in supervision.violations(checks) if v["customer_id"] == "b")
    assert late["event_ids"] == ["p2", "p2d"]
    weeks = supervision.trend(checks, period="week")
    assert {w["rule"] for w in weeks} == set(supervision.RULE_IDS)


def test_generated_operator_violations_found_exactly(tmp_path):
    """On a generated operator the rules find exactly the planted violations."""
    import json

    from voxloop.config import Settings
    from voxloop.demo.generator import generate_operator
    from voxloop.ingest.service import ingest_file
    from voxloop.store.service import lake_connection

    out = tmp_path / "op"
    generate_operator(customers=3000, days=60, seed=3, out_dir=out)
    settings = Settings(home=tmp_path / "home", env="test", secret_key="gen-test-key")
    ingest_file(settings=settings, path=out / "events.jsonl", kind="event")
    checks = supervision.check_events(lake_connection(settings, ("events",)))
    truth = json.loads((out / "ground_truth.json").read_text())["commitment_violations"]
    score = supervision.compare_with_truth(checks, truth, key=settings.secret_key)
    assert score["all"]["planted"] >= 20
    for rule in (*supervision.RULE_IDS, "all"):
        assert score[rule]["missed"] == 0 and score[rule]["false_positives"] == 0, (rule, score)


def test_violations_open_work_orders_once(any_db_settings):
    from tests.test_act_orders import clean_act_tables
    from voxloop.act import service
    from voxloop.act.access import Principal
    from voxloop.store.service import make_engine, make_sessionmaker, migrate

    migrate(any_db_settings)
    engine = make_engine(any_db_settings)
    clean_act_tables(engine)
    found = supervision.violations(supervision.check_events(build().connection()))
    js = Principal(user_id=None, username="js", role="supervisor", province="江苏")
    with make_sessionmaker(engine)() as s:
        first = service.open_orders_for_violations(session=s, principal=js, violations=found)
        again = service.open_orders_for_violations(session=s, principal=js, violations=found)
        orders = service.list_orders(session=s, principal=js)
    engine.dispose()
    in_js = sum(1 for v in found if v["province"] == "江苏")
    assert 0 < in_js < len(found)
    assert first == {"created": in_js, "existing": 0, "out_of_scope": len(found) - in_js}
    assert again["created"] == 0 and again["existing"] == in_js
    plan = next(o for o in orders if o.source_ref == "R6:p2")
    assert (plan.scenario, plan.commitment_id, plan.source_kind) == (
        "PLAN",
        "C3-plan-change",
        "alert",
    )


def test_commitments_page_follows_the_filter_bar(tmp_path):
    """The Commitments page and its downloads count only the bar's region and dates."""
    from tests.conftest import admin_client
    from tests.test_web_export import read_csv
    from voxloop.api.app import create_app
    from voxloop.config import Settings
    from voxloop.store.service import write_part

    ev = build()
    settings = Settings(home=tmp_path / "home", env="test", secret_key="bar-test-key")
    rows = [
        {**r, "content_hash": r["id"], "ingested_at": T0, "batch_id": "b1", "source_row": i}
        for i, r in enumerate(ev.rows)
    ]
    table = pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)
    write_part(settings, "events", table)
    checks = supervision.check_events(ev.connection())
    client = admin_client(create_app(settings))

    def compliance(**params):
        got = read_csv(client.get("/commitments", params={**params, "format": "csv"}))
        return {r["rule"]: (int(r["checked"]), int(r["violations"])) for r in got}

    def expected(mask):
        rules = supervision.compliance(checks.filter(mask))
        return {r["rule"]: (r["checked"], r["violations"]) for r in rules}

    everything = compliance()
    assert everything == expected(pc.is_valid(checks.column("rule")))
    in_js = compliance(province="江苏")
    assert in_js == expected(pc.fill_null(pc.equal(checks.column("province"), "江苏"), False))
    assert in_js != everything
    # Requests are on 2026-09-01 (local) except p5, nine days later.
    late = compliance(**{"from": "2026-09-05"})
    start = datetime(2026, 9, 4, 16, 0, tzinfo=UTC)  # 2026-09-05 00:00 Shanghai
    assert late == expected(
        pc.greater_equal(checks.column("requested_at"), pa.scalar(start, pa.timestamp("us", "UTC")))
    )
    assert late != everything
    assert compliance(**{"from": "2000-01-01", "to": "2000-01-02"}) == expected(
        pc.equal(checks.column("rule"), "none")
    )
    in_district = compliance(province="江苏", district="玄武区")
    assert in_district == expected(
        pc.fill_null(pc.equal(checks.column("district"), "玄武区"), False)
    )
    assert sum(c for c, _ in in_district.values()) == 2  # customers a and b
    page = client.get("/commitments", params={"province": "广东", "lang": "en"})
    assert page.status_code == 200
    violations = read_csv(
        client.get(
            "/commitments", params={"province": "广东", "format": "csv", "table": "violations"}
        )
    )
    assert violations and {v["province"] for v in violations} == {"广东"}
    bad = client.get("/commitments", params={"to": "2026-13-01"})
    assert bad.status_code == 422 and "to" in bad.text
