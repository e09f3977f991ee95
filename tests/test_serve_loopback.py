"""Dev mode (env = "dev", no user yet) is served on loopback only (issue 15, part 2)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from voxloop.act.access import add_user, create_token
from voxloop.api.app import DEV_MODE_REFUSAL, check_bind, create_app, is_loopback_host
from voxloop.config import Settings
from voxloop.errors import ConfigError

VOXLOOP = Path(sys.executable).with_name("voxloop")


def _env(home: Path, env: str = "dev") -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VOXLOOP_")}
    return {**clean, "VOXLOOP_ENV": env, "VOXLOOP_HOME": str(home)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.20", False),
        ("::ffff:10.0.0.1", False),
        ("voxloop.example", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_serve_refuses_dev_mode_on_all_interfaces(tmp_path: Path) -> None:
    run = subprocess.run(
        [str(VOXLOOP), "serve", "--host", "0.0.0.0", "--port", str(_free_port())],
        env=_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "refusing to serve on 0.0.0.0" in run.stderr
    assert "create a user" in run.stderr and "VOXLOOP_ENV" in run.stderr
    assert "voxloop dashboard" not in run.stdout


def test_serve_dev_mode_on_loopback_answers_without_login(tmp_path: Path) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [str(VOXLOOP), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=_env(tmp_path / "home"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        response = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/v1/work-orders", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.3)
        assert response is not None, "server did not come up"
        assert response.status_code == 200
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=60)
    assert "voxloop dashboard: http://127.0.0.1" in out


def test_check_bind_allows_any_address_once_dev_mode_is_closed(tmp_path: Path) -> None:
    dev = create_app(Settings(home=tmp_path / "dev", env="dev"))
    with pytest.raises(ConfigError, match="create a user"):
        check_bind(dev, host="0.0.0.0")
    check_bind(dev, host="127.0.0.1")
    with dev.state.sessionmaker.begin() as s:
        add_user(session=s, username="first", role="admin", password="pw")
    check_bind(dev, host="0.0.0.0")
    dev.state.engine.dispose()
    prod = create_app(
        Settings(home=tmp_path / "prod", env="prod", secret_key="a-real-secret-0123456789abcdef")
    )
    check_bind(prod, host="0.0.0.0")
    prod.state.engine.dispose()


def test_dev_admin_is_refused_to_remote_callers(tmp_path: Path) -> None:
    app = create_app(Settings(home=tmp_path / "home", env="dev"))
    with (
        TestClient(app, client=("127.0.0.1", 50001)) as local,
        TestClient(app, client=("::1", 50002)) as local6,
        TestClient(app, client=("203.0.113.7", 50003)) as remote,
    ):
        assert local.get("/api/v1/work-orders").status_code == 200
        assert local6.get("/work-orders").status_code == 200
        refused = remote.get("/api/v1/work-orders")
        assert refused.status_code == 403
        assert refused.json()["detail"] == DEV_MODE_REFUSAL
        assert refused.json()["loc"] == ["header", "authorization"]
        page = remote.get("/work-orders", follow_redirects=False)
        assert page.status_code == 403
        # A liveness probe from a load balancer still gets through.
        assert remote.get("/healthz").status_code == 200
        # The first user ends dev mode: remote callers then authenticate like anyone else.
        with app.state.sessionmaker.begin() as s:
            add_user(session=s, username="first", role="admin", password="pw")
        with app.state.sessionmaker.begin() as s:
            token = create_token(session=s, username="first")
        assert remote.get("/api/v1/work-orders").status_code == 401
        authorised = remote.get("/api/v1/work-orders", headers={"Authorization": f"Bearer {token}"})
        assert authorised.status_code == 200
        assert local.get("/api/v1/work-orders").status_code == 401
    app.state.engine.dispose()


def test_serve_with_two_workers_answers_from_both_processes(tmp_path: Path) -> None:
    """``serve --workers 2`` starts two server processes that build the app themselves."""
    port = _free_port()
    server = subprocess.Popen(
        [str(VOXLOOP), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        env=_env(tmp_path / "home"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        answered = 0
        while time.monotonic() < deadline and server.poll() is None and answered < 20:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/v1/work-orders", timeout=5)
                assert response.status_code == 200
                answered += 1
            except httpx.TransportError:
                time.sleep(0.3)
        assert answered == 20, "server did not come up"
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=60)
    # Each worker process logs its own start.
    assert out.count("Started server process") == 2
