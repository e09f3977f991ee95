"""Work-order API under load: 50 concurrent clients against a real uvicorn server.

Phase 1 (``VOXLOOP_BENCH_ACT_SECONDS``, default 60 s): every client creates orders (a share
of creates is sent twice with the same Idempotency-Key, as a client retry would), moves its
own orders through their life cycle and fights over a few shared "hot" orders with
optimistic concurrency (409 -> reload -> retry).  Checks: no lost update (every acknowledged
transition has its own version, final version = 1 + acknowledged transitions), no duplicate
from retried creates, the audit log replays to every final state.

Phase 2: the same load, the server is SIGKILLed half-way and restarted; every change the
server acknowledged before the kill must still be there.

The server is ``voxloop serve --workers N --no-access-log`` (``VOXLOOP_BENCH_ACT_WORKERS``,
default 2; phase 1 is also run with the other counts of ``COMPARE_WORKERS``), the command an
operator runs.  The clients are 50 keep-alive
connections on one asyncio thread.  Beside req/s and latency, the CPU seconds of the server's
process group, of the PostgreSQL backends and of the client are read from /proc and given per
committed change (201 create or 200 transition): on a small shared machine that figure is
comparable across runs where req/s is not.  ``VOXLOOP_BENCH_ACT_QUICK=1`` runs phase 1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
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
#: uvicorn worker processes (``VOXLOOP_BENCH_ACT_WORKERS``).
WORKERS = 2
#: The goal of issue 15 part 1.
GOAL_CHANGES = 1000
GOAL_P99_MS = 50
#: Worker counts whose phase 1 is also run for the comparison table.
COMPARE_WORKERS = (1, 2)
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
    #: Changes the server committed: creates answered 201 and transitions answered 200.
    committed: int = 0

    def record(self, seconds: float, status: int | None, *, change: bool = False) -> None:
        with self.lock:
            self.latencies.append(seconds)
            if status is None or status >= 500:
                self.errors += 1
            elif status == 409:
                self.conflicts += 1
            elif status < 300:
                self.ok += 1
                if change and status in (200, 201):
                    self.committed += 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(env: dict[str, str], port: int, workers: int) -> subprocess.Popen[bytes]:
    # The product's own entry point, as an operator runs it (access log off, as behind a
    # proxy that logs requests).
    command = [
        str(Path(sys.executable).with_name("voxloop")),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
    ]
    # Own process group: the SIGKILL check kills the master and every worker at once.
    proc = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    _kill_group(proc, signal.SIGKILL)
    raise RuntimeError("server did not start within 60 s")


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _proc_cpu(select: Any) -> float:
    """Return the CPU seconds (user + system) of the live processes ``select(stat)`` keeps."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state is 3, pgrp 5, utime 14, stime 15.
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        if select(name, fields):
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _box_busy() -> float:
    """Return the busy CPU seconds of the whole machine so far (all cores, /proc/stat)."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class CpuMeter:
    """CPU seconds of the server (process group), PostgreSQL backends, this client, the box."""

    server_pgid: int
    start: dict[str, float] = field(default_factory=dict)

    def read(self) -> dict[str, float]:
        """Return the current counters."""
        pgid = str(self.server_pgid)
        return {
            "server": _proc_cpu(lambda _n, f: f[2] == pgid),
            "postgres": _proc_cpu(lambda n, _f: n == "postgres"),
            "client": time.process_time(),
            "box": _box_busy(),
        }

    def begin(self) -> None:
        """Start measuring."""
        self.start = self.read()

    def spent(self) -> dict[str, float]:
        """Return the CPU seconds spent since ``begin``."""
        now = self.read()
        return {k: now[k] - self.start[k] for k in now}


class _Connection:
    """One keep-alive HTTP/1.1 connection: the bare minimum a JSON API client needs.

    A plain asyncio socket instead of httpx threads: the load generator shares the
    server's two cores, and 50 httpx client threads ate about a core of their own.
    """

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.auth = f"Authorization: Bearer {token}\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def _exchange(
        self, method: str, path: str, body: Any, extra: str
    ) -> tuple[int, dict[str, Any]]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        data = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{self.auth}{extra}"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length, close = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        payload = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, (json.loads(payload) if payload else {})

    async def request(
        self,
        ledger: Ledger,
        method: str,
        path: str,
        body: Any = None,
        *,
        extra: str = "",
        change_status: int | None = None,
    ) -> tuple[int, dict[str, Any]] | None:
        """Send one request; record its latency and outcome; ``None`` on a transport error."""
        start = time.perf_counter()
        try:
            status, data = await asyncio.wait_for(self._exchange(method, path, body, extra), 30)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError):
            self.close()
            ledger.record(time.perf_counter() - start, None)
            # Back off while the server is down instead of spinning on refused connections.
            await asyncio.sleep(0.2)
            return None
        ledger.record(time.perf_counter() - start, status, change=status == change_status)
        return status, data


async def _transition(
    conn: _Connection, ledger: Ledger, order_id: str, to: str, version: int, reason: Any = None
) -> dict[str, Any] | None:
    body = {"to": to, "version": version, "reason": reason}
    got = await conn.request(
        ledger, "POST", f"/api/v1/work-orders/{order_id}/transition", body, change_status=200
    )
    if got is not None and got[0] == 200:
        data = got[1]
        with ledger.lock:
            ledger.acks[order_id].append((int(data["version"]), str(data["state"])))
        return data
    return None


async def _client_loop(
    port: int, token: str, ledger: Ledger, hot: list[str], stop: threading.Event, seed: int
) -> None:
    rnd = random.Random(seed)
    conn = _Connection(port, token)
    try:
        for _ in range(1_000_000):  # bounded; the stop event ends it first
            if stop.is_set():
                return
            if rnd.random() < 0.5:
                await _hot_step(conn, ledger, rnd.choice(hot))
                continue
            key = uuid.uuid4().hex
            body = {"title": "bench", "scenario": rnd.choice(["BILL", "HBB", "PLAN"])}
            sends = 2 if rnd.random() < RETRY_SHARE else 1
            order_id = None
            for _ in range(sends):
                got = await conn.request(
                    ledger,
                    "POST",
                    "/api/v1/work-orders",
                    body,
                    extra=f"Idempotency-Key: {key}\r\n",
                    change_status=201,
                )
                if got is not None and got[0] in (200, 201):
                    oid = str(got[1]["id"])
                    with ledger.lock:
                        if key in ledger.creates and ledger.creates[key] != oid:
                            ledger.duplicate_ids += 1
                        ledger.creates[key] = oid
                    order_id = oid
            if order_id is None:
                continue
            version = 1
            for to, reason in (("in_progress", None), ("resolved", "fixed"), ("closed", "done")):
                if stop.is_set():
                    return
                data = await _transition(conn, ledger, order_id, to, version, reason)
                if data is None:
                    break
                version = int(data["version"])
    finally:
        conn.close()


async def _hot_step(conn: _Connection, ledger: Ledger, order_id: str) -> None:
    for _ in range(5):
        got = await conn.request(ledger, "GET", f"/api/v1/work-orders/{order_id}")
        if got is None or got[0] != 200:
            return
        current = got[1]
        to = "pending_customer" if current["state"] == "in_progress" else "in_progress"
        if await _transition(conn, ledger, order_id, to, int(current["version"])) is not None:
            return


def _run_load(
    port: int, token: str, hot: list[str], seconds: float, kill: Any = None
) -> tuple[Ledger, float]:
    ledger = Ledger()
    stop = threading.Event()

    async def clients() -> None:
        await asyncio.gather(
            *(_client_loop(port, token, ledger, hot, stop, i) for i in range(CLIENTS))
        )

    # The clients run on one event loop in a thread; this thread times and kills.
    loop_thread = threading.Thread(target=asyncio.run, args=(clients(),))
    start = time.time()
    loop_thread.start()
    if kill is not None:
        time.sleep(seconds / 2)
        kill()
        time.sleep(seconds / 2)
    else:
        time.sleep(seconds)
    stop.set()
    loop_thread.join(timeout=120)
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
    """Run both phases (and the worker-count comparison) and return the Markdown section."""
    seconds = float(os.environ.get("VOXLOOP_BENCH_ACT_SECONDS", "60"))
    workers = int(os.environ.get("VOXLOOP_BENCH_ACT_WORKERS", str(WORKERS)))
    # Phase 1 only (no SIGKILL phase, no comparison, no supervision section): for profiling.
    quick = os.environ.get("VOXLOOP_BENCH_ACT_QUICK") == "1"
    lines, main = _one_run(workers=workers, seconds=seconds, full=not quick)
    if quick:
        return "\n".join(lines)
    rows = [main]
    for other in COMPARE_WORKERS:
        if other != workers:
            rows.append(_one_run(workers=other, seconds=seconds / 2, full=False)[1])
    table = [
        "",
        "Phase 1 by worker count (the other counts on a fresh database, half the duration):\n",
        "| workers | req/s | committed changes/s | p50 | p99 | server CPU ms/change | "
        "PostgreSQL CPU ms/change | server CPU share (cores) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: int(r["workers"])):
        table.append(
            f"| {int(r['workers'])} | {r['rps']:.1f} | {r['cps']:.1f} | {r['p50']:.0f} ms | "
            f"{r['p99']:.0f} ms | {r['server_ms']:.2f} | {r['pg_ms']:.2f} | {r['share']:.2f} |"
        )
    table += ["", _goal_line(main)]
    at = next(i for i, line in enumerate(lines) if line.startswith("\nResult:"))
    lines[at:at] = table
    tmp = Path(tempfile.mkdtemp(prefix="voxloop-bench-act-"))
    lines.append(_supervision_section(tmp))
    return "\n".join(lines)


def _goal_line(r: dict[str, float]) -> str:
    """Say whether the issue-15 goal is met and what one core of server CPU would sustain."""
    met = r["cps"] >= GOAL_CHANGES and r["p99"] <= GOAL_P99_MS
    return (
        f"Goal (issue 15: >= {GOAL_CHANGES} committed changes/s and p99 <= {GOAL_P99_MS} ms "
        f"at {CLIENTS} clients): **{'met' if met else 'not met'}** here "
        f"({r['cps']:.0f} changes/s, p99 {r['p99']:.0f} ms with {int(r['workers'])} workers). "
        f"At {r['server_ms']:.2f} ms of server CPU per committed change, one fully available "
        f"core runs at most {1000 / r['server_ms']:.0f} changes/s of server work, before "
        "PostgreSQL and the load client take their share."
    )


def _one_run(*, workers: int, seconds: float, full: bool) -> tuple[list[str], dict[str, float]]:
    """Run phase 1 (and with ``full`` phase 2) on a fresh database; return lines and figures."""
    from voxloop.act.access import add_user, create_token
    from voxloop.config import Settings
    from voxloop.store.service import make_engine, make_sessionmaker, migrate

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
    server = _start_server(env, port, workers)
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
        meter = CpuMeter(server.pid)
        meter.begin()
        ledger, elapsed = _run_load(port, token, hot, seconds)
        cpu = meter.spent()
        ledger.acks = defaultdict(list, ledger.acks)
        for oid in hot:  # the set-up transition above was acknowledged too
            ledger.acks[oid].insert(0, (2, "in_progress"))
        check1 = _check_phase1(ledger, settings)
        requests = len(ledger.latencies)
        lines += [
            f"Database: {'PostgreSQL' if db_url else 'SQLite'}; uvicorn with {workers} "
            f"worker process(es); "
            f"{CLIENTS} concurrent keep-alive client connections (one asyncio thread) on the "
            f"same machine; {HOT_ORDERS} contended orders; "
            f"{int(RETRY_SHARE * 100)}% of creates retried with the same Idempotency-Key.\n",
            "| phase 1 (no failures) | value |",
            "|---|---|",
            f"| duration | {elapsed:.1f} s |",
            f"| requests | {requests} |",
            f"| throughput | {requests / elapsed:.1f} req/s ({ledger.ok / elapsed:.1f} 2xx/s) |",
            f"| latency p50 / p99 | {_percentile(ledger.latencies, 0.5) * 1000:.0f} ms / "
            f"{_percentile(ledger.latencies, 0.99) * 1000:.0f} ms |",
            f"| committed changes (201 creates + 200 transitions) | {ledger.committed} "
            f"({ledger.committed / elapsed:.1f}/s) |",
            f"| 409 conflicts (expected on hot orders) | {ledger.conflicts} |",
            f"| errors (5xx / transport) | {ledger.errors} |",
        ]
        lines += [f"| {k.replace('_', ' ')} | {v} |" for k, v in check1.items()]
        per = max(ledger.committed, 1)
        lines += [
            "",
            "| CPU during phase 1 | seconds | ms per committed change | ms per request |",
            "|---|---:|---:|---:|",
        ]
        for name, label in (
            ("server", "server (uvicorn process group)"),
            ("postgres", "PostgreSQL processes (every database on the machine)"),
            ("client", "load client (this process)"),
            ("box", "whole machine (all cores, other work included)"),
        ):
            lines.append(
                f"| {label} | {cpu[name]:.1f} | {cpu[name] * 1000 / per:.2f} | "
                f"{cpu[name] * 1000 / max(requests, 1):.2f} |"
            )
        summary = {
            "workers": float(workers),
            "rps": requests / elapsed,
            "cps": ledger.committed / elapsed,
            "p50": _percentile(ledger.latencies, 0.5) * 1000,
            "p99": _percentile(ledger.latencies, 0.99) * 1000,
            "server_ms": cpu["server"] * 1000 / per,
            "pg_ms": cpu["postgres"] * 1000 / per,
            "share": cpu["server"] / elapsed,
        }
        if not full:
            return lines, summary

        state = {"server": server}

        def kill() -> None:
            _kill_group(state["server"], signal.SIGKILL)
            state["server"].wait()
            state["server"] = _start_server(env, port, workers)

        ledger2, elapsed2 = _run_load(port, token, hot, max(10.0, seconds / 3), kill=kill)
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
    finally:
        _kill_group(server, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            _kill_group(server, signal.SIGKILL)
        if pg is not None:
            admin, name = pg
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()
    return lines, summary


if __name__ == "__main__":
    print(run())
