"""Work-order API under load: 50 concurrent clients against a real uvicorn server.

Phase 1 (``VOXLOOP_BENCH_ACT_SECONDS``, default 60 s): every client creates orders (a share
of creates is sent twice with the same Idempotency-Key, as a client retry would), moves its
own orders through their life cycle and fights over a few shared "hot" orders with
optimistic concurrency (409 -> reload -> retry).  Checks: no lost update (every acknowledged
transition has its own version, final version = 1 + acknowledged transitions), no duplicate
from retried creates, the audit log replays to every final state.

Phase 2: the same load, the server is SIGKILLed half-way and restarted; every change the
server acknowledged before the kill must still be there.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

CLIENTS = 50
HOT_ORDERS = 5
RETRY_SHARE = 0.3
PG_ADMIN_URL = os.environ.get("VOXLOOP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass
class Ledger:
    """What the server acknowledged, as seen by the clients."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    creates: dict[str, str] = field(default_factory=dict)  # idempotency key -> order id
    duplicate_ids: int = 0
    acks: dict[str, list[tuple[int, str]]] = field(default_factory=lambda: defaultdict(list))
    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    conflicts: int = 0
    errors: int = 0

    def record(self, seconds: float, status: int | None) -> None:
        with self.lock:
            self.latencies.append(seconds)
            if status is None or status >= 500:
                self.errors += 1
            elif status == 409:
                self.conflicts += 1
            elif status < 300:
                self.ok += 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    code = (
        "import uvicorn\n"
        "from voxloop.api.app import create_app\n"
        "from voxloop.config import load_settings\n"
        f"uvicorn.run(create_app(load_settings()), host='127.0.0.1', port={port}, "
        "log_level='warning')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start within 60 s")


def _call(
    client: httpx.Client, ledger: Ledger, method: str, url: str, **kw: Any
) -> httpx.Response | None:
    start = time.perf_counter()
    try:
        r = client.request(method, url, **kw)
    except httpx.HTTPError:
        ledger.record(time.perf_counter() - start, None)
        # Back off while the server is down instead of spinning on refused connections.
        time.sleep(0.2)
        return None
    ledger.record(time.perf_counter() - start, r.status_code)
    return r


def _transition(
    client: httpx.Client, ledger: Ledger, order_id: str, to: str, version: int, reason: Any = None
) -> dict[str, Any] | None:
    body = {"to": to, "version": version, "reason": reason}
    r = _call(client, ledger, "POST", f"/api/v1/work-orders/{order_id}/transition", json=body)
    if r is not None and r.status_code == 200:
        data: dict[str, Any] = r.json()
        with ledger.lock:
            ledger.acks[order_id].append((int(data["version"]), str(data["state"])))
        return data
    return None


def _client_loop(
    base: str, token: str, ledger: Ledger, hot: list[str], stop: threading.Event, seed: int
) -> None:
    rnd = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for _ in range(100_000):  # bounded; the stop event ends it first
            if stop.is_set():
                return
            if rnd.random() < 0.5:
                _hot_step(client, ledger, rnd.choice(hot))
                continue
            key = uuid.uuid4().hex
            body = {"title": "bench", "scenario": rnd.choice(["BILL", "HBB", "PLAN"])}
            sends = 2 if rnd.random() < RETRY_SHARE else 1
            order_id = None
            for _ in range(sends):
                r = _call(
                    client,
                    ledger,
                    "POST",
                    "/api/v1/work-orders",
                    json=body,
                    headers={"Idempotency-Key": key},
                )
                if r is not None and r.status_code in (200, 201):
                    got = str(r.json()["id"])
                    with ledger.lock:
                        if key in ledger.creates and ledger.creates[key] != got:
                            ledger.duplicate_ids += 1
                        ledger.creates[key] = got
                    order_id = got
            if order_id is None:
                continue
            version = 1
            for to, reason in (("in_progress", None), ("resolved", "fixed"), ("closed", "done")):
                if stop.is_set():
                    return
                data = _transition(client, ledger, order_id, to, version, reason)
                if data is None:
                    break
                version = int(data["version"])


def _hot_step(client: httpx.Client, ledger: Ledger, order_id: str) -> None:
    for _ in range(5):
        r = _call(client, ledger, "GET", f"/api/v1/work-orders/{order_id}")
        if r is None or r.status_code != 200:
            return
        current = r.json()
        to = "pending_customer" if current["state"] == "in_progress" else "in_progress"
        if _transition(client, ledger, order_id, to, int(current["version"])) is not None:
            return


def _run_load(
    base: str, token: str, hot: list[str], seconds: float, kill: Any = None
) -> tuple[Ledger, float]:
    ledger = Ledger()
    stop = threading.Event()
    threads = [
        threading.Thread(target=_client_loop, args=(base, token, ledger, hot, stop, i))
        for i in range(CLIENTS)
    ]
    start = time.time()
    for t in threads:
        t.start()
    if kill is not None:
        time.sleep(seconds / 2)
        kill()
        time.sleep(seconds / 2)
    else:
        time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    return ledger, time.time() - start


def _db_state(settings: Any) -> tuple[dict[str, tuple[str, int]], dict[str, list[dict[str, Any]]]]:
    from sqlalchemy import text

    from voxloop.store.service import make_engine

    engine = make_engine(settings)
    with engine.connect() as con:
        orders = {
            r[0]: (r[1], int(r[2]))
            for r in con.execute(text("SELECT id, state, version FROM act_work_orders"))
        }
        trail: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for object_id, action, detail in con.execute(
            text(
                "SELECT object_id, action, detail FROM act_audit_log "
                "WHERE object_type = 'work_order' ORDER BY id"
            )
        ):
            trail[object_id].append({"action": action, **json.loads(detail)})
    engine.dispose()
    return orders, trail


def _check_phase1(ledger: Ledger, settings: Any) -> dict[str, Any]:
    orders, trail = _db_state(settings)
    lost = dup_versions = audit_bad = 0
    for order_id, acks in ledger.acks.items():
        versions = [v for v, _ in acks]
        dup_versions += len(versions) - len(set(versions))
        state, version = orders[order_id]
        if version != 1 + len(acks) or state != max(acks)[1]:
            lost += 1
    for order_id, (state, version) in orders.items():
        entries = trail.get(order_id, [])
        changes = [e for e in entries if e["action"] in ("order.create", "order.transition")]
        versions = [int(e["version"]) for e in changes]
        last = changes[-1] if changes else {}
        if versions != list(range(1, version + 1)) or last.get("to", last.get("state")) != state:
            audit_bad += 1
    distinct_keys = len(ledger.creates)
    return {
        "orders": len(orders),
        "acknowledged_creates": distinct_keys,
        "duplicate_ids_from_retries": ledger.duplicate_ids,
        "duplicate_versions": dup_versions,
        "lost_updates": lost,
        "audit_mismatches": audit_bad,
    }


def _check_phase2(ledger: Ledger, settings: Any) -> dict[str, Any]:
    orders, trail = _db_state(settings)
    missing_creates = sum(1 for oid in ledger.creates.values() if oid not in orders)
    missing_changes = 0
    for order_id, acks in ledger.acks.items():
        if order_id not in orders:
            missing_changes += len(acks)
            continue
        state, version = orders[order_id]
        audited = {
            int(e["version"]) for e in trail.get(order_id, []) if e["action"] == "order.transition"
        }
        for v, _ in acks:
            if v > version or v not in audited:
                missing_changes += 1
        top = max(acks)
        if top[0] == version and top[1] != state:
            missing_changes += 1
    return {
        "acknowledged_creates": len(ledger.creates),
        "acknowledged_transitions": sum(len(a) for a in ledger.acks.values()),
        "missing_creates_after_restart": missing_creates,
        "missing_transitions_after_restart": missing_changes,
    }


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _database(tmp: Path) -> tuple[str | None, Any]:
    """Use a throwaway PostgreSQL database when reachable (and not VOXLOOP_BENCH_ACT_DB=sqlite)."""
    if os.environ.get("VOXLOOP_BENCH_ACT_DB") == "sqlite":
        return None, None
    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except Exception:
        return None, None
    name = f"voxloop_bench_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return f"{url}/{name}", (admin, name)


def _supervision_section(tmp: Path) -> str:
    """Time the commitment rules on a generated operator and score them against its truth."""
    from voxloop.act import supervision
    from voxloop.config import Settings
    from voxloop.demo.generator import generate_operator
    from voxloop.ingest.service import ingest_file
    from voxloop.store.service import lake_connection

    out = tmp / "opB"
    generate_operator(customers=20_000, days=60, seed=1, out_dir=out)
    settings = Settings(home=tmp / "supervision", env="test", secret_key="bench-act-secret")
    ingest_file(settings=settings, path=out / "events.jsonl", kind="event")
    con = lake_connection(settings, ("events",))
    (n_events,) = con.execute("SELECT count(*) FROM events").fetchall()[0]
    start = time.perf_counter()
    checks = supervision.check_events(con)
    seconds = time.perf_counter() - start
    truth = json.loads((out / "ground_truth.json").read_text())["commitment_violations"]
    score = supervision.compare_with_truth(checks, truth, key=settings.secret_key)
    rows = [
        "\n### Commitment supervision on a generated operator\n",
        "`generate_operator(customers=20000, days=60, seed=1)`, events ingested to the lake, "
        f"then `check_events`: {n_events} events, {checks.num_rows} requests checked in "
        f"{seconds:.2f} s.\n",
        "| rule | planted | found | true positives | false positives | missed |",
        "|---|---|---|---|---|---|",
    ]
    for rule, s in score.items():
        rows.append(
            f"| {rule} | {s['planted']} | {s['found']} | {s['true_positives']} | "
            f"{s['false_positives']} | {s['missed']} |"
        )
    return "\n".join(rows)


def run() -> str:
    """Run both phases and return the Markdown section."""
    from voxloop.act.access import add_user, create_token
    from voxloop.config import Settings
    from voxloop.store.service import make_engine, make_sessionmaker, migrate

    seconds = float(os.environ.get("VOXLOOP_BENCH_ACT_SECONDS", "60"))
    tmp = Path(tempfile.mkdtemp(prefix="voxloop-bench-act-"))
    db_url, pg = _database(tmp)
    env = {
        **os.environ,
        "VOXLOOP_HOME": str(tmp / "home"),
        "VOXLOOP_ENV": "test",
        "VOXLOOP_SECRET_KEY": "bench-act-secret",
    }
    if db_url:
        env["VOXLOOP_DATABASE_URL"] = db_url
    settings = Settings(
        home=tmp / "home", env="test", secret_key="bench-act-secret", database_url=db_url
    )
    migrate(settings)
    engine = make_engine(settings)
    with make_sessionmaker(engine)() as s:
        add_user(session=s, username="bench", role="admin")
        token = create_token(session=s, username="bench")
        s.commit()
    engine.dispose()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = _start_server(env, port)
    lines = ["## act: work-order API under concurrent load\n"]
    try:
        hot = []
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as c:
            for i in range(HOT_ORDERS):
                oid = c.post("/api/v1/work-orders", json={"title": f"hot {i}"}).json()["id"]
                c.post(
                    f"/api/v1/work-orders/{oid}/transition",
                    json={"to": "in_progress", "version": 1},
                )
                hot.append(oid)
        ledger, elapsed = _run_load(base, token, hot, seconds)
        ledger.acks = defaultdict(list, ledger.acks)
        for oid in hot:  # the set-up transition above was acknowledged too
            ledger.acks[oid].insert(0, (2, "in_progress"))
        check1 = _check_phase1(ledger, settings)
        requests = len(ledger.latencies)
        lines += [
            f"Database: {'PostgreSQL' if db_url else 'SQLite'}; one uvicorn process; "
            f"{CLIENTS} client threads on the same machine; {HOT_ORDERS} contended orders; "
            f"{int(RETRY_SHARE * 100)}% of creates retried with the same Idempotency-Key.\n",
            "| phase 1 (no failures) | value |",
            "|---|---|",
            f"| duration | {elapsed:.1f} s |",
            f"| requests | {requests} |",
            f"| throughput | {requests / elapsed:.1f} req/s ({ledger.ok / elapsed:.1f} 2xx/s) |",
            f"| latency p50 / p99 | {_percentile(ledger.latencies, 0.5) * 1000:.0f} ms / "
            f"{_percentile(ledger.latencies, 0.99) * 1000:.0f} ms |",
            f"| 409 conflicts (expected on hot orders) | {ledger.conflicts} |",
            f"| errors (5xx / transport) | {ledger.errors} |",
        ]
        lines += [f"| {k.replace('_', ' ')} | {v} |" for k, v in check1.items()]

        state = {"server": server}

        def kill() -> None:
            state["server"].send_signal(signal.SIGKILL)
            state["server"].wait()
            state["server"] = _start_server(env, port)

        ledger2, elapsed2 = _run_load(base, token, hot, max(10.0, seconds / 3), kill=kill)
        server = state["server"]
        check2 = _check_phase2(ledger2, settings)
        lines += [
            "",
            "| phase 2 (SIGKILL half-way, restart) | value |",
            "|---|---|",
            f"| duration | {elapsed2:.1f} s |",
            f"| requests | {len(ledger2.latencies)} (errors during the outage: {ledger2.errors}) |",
        ]
        lines += [f"| {k.replace('_', ' ')} | {v} |" for k, v in check2.items()]
        ok = (
            check1["lost_updates"] == 0
            and check1["duplicate_ids_from_retries"] == 0
            and check1["duplicate_versions"] == 0
            and check1["audit_mismatches"] == 0
            and check1["orders"] == check1["acknowledged_creates"] + HOT_ORDERS
            and check2["missing_creates_after_restart"] == 0
            and check2["missing_transitions_after_restart"] == 0
        )
        lines.append(f"\nResult: {'all consistency checks passed' if ok else 'CHECKS FAILED'}.")
        lines.append(_supervision_section(tmp))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        if pg is not None:
            admin, name = pg
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
