"""Schemathesis against the project's own OpenAPI: every route, as an admin and a regional user.

Every operation of ``/api/openapi.json`` gets a bounded number of generated requests (valid
ones and ones that break the schema), sent in-process to the real application over a
filled lake and SQLite store. A response fails when it is a 5xx, when its status code or
body is not the one the OpenAPI documents, or when a 4xx does not name the field (a
``loc``) it refuses. ``VOXLOOP_FUZZ_EXAMPLES`` raises the per-operation budget for a
deeper local run; the default keeps the whole module well under three minutes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

from fastapi import FastAPI  # noqa: E402
from hypothesis import HealthCheck, Phase  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    response_schema_conformance,
    status_code_conformance,
)

from voxloop.act.access import add_user, create_token  # noqa: E402
from voxloop.api.app import create_app  # noqa: E402
from voxloop.config import Settings  # noqa: E402

from .test_web_pages import populate_lake  # noqa: E402

#: Generated requests per operation and generation mode (positive, negative).
EXAMPLES = int(os.environ.get("VOXLOOP_FUZZ_EXAMPLES", "5"))


def names_the_field(ctx: Any, response: Any, case: Any) -> bool | None:
    """Fail a 4xx whose JSON body does not say which field (``loc``) it refuses."""
    if not 400 <= response.status_code < 500:
        return None
    body = response.json()
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        assert detail and all(item.get("loc") for item in detail), f"4xx without loc: {body}"
    else:
        assert isinstance(body, dict) and body.get("loc"), f"4xx without loc: {body}"
    return True


CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, dict[str, str]]]:
    """Yield the app over a filled store and the bearer headers of an admin and a regional user."""
    home = tmp_path_factory.mktemp("fuzz") / "home"
    settings = Settings(home=home, env="test", secret_key="test-secret-key")
    app = create_app(settings)
    populate_lake(settings, n=120)
    tokens: dict[str, str] = {}
    for username, role, province in (
        ("fuzz.admin", "admin", None),
        ("fuzz.js", "supervisor", "江苏"),
    ):
        with app.state.sessionmaker.begin() as session:
            add_user(session=session, username=username, role=role, province=province, actor="test")
        with app.state.sessionmaker.begin() as session:
            tokens[role] = create_token(session=session, username=username, actor="test")
    yield app, tokens
    app.state.engine.dispose()


def _fuzz_operation(operation: Any, mode: Any, headers: dict[str, str]) -> tuple[list[str], int]:
    failures: list[str] = []
    seen: set[str] = set()
    sent = 0

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        nonlocal sent
        sent += 1
        try:
            response = case.call(headers=headers)
        except Exception as exc:  # an unhandled server error surfaces here in-process
            key = f"{operation.label} [{mode.value}] server raised {type(exc).__name__}: {exc}"
            if key not in seen:
                seen.add(key)
                failures.append(f"{key}\n    {case.as_curl_command(headers=headers)[:600]}")
            return
        try:
            case.validate_response(response, checks=CHECKS, additional_checks=[names_the_field])
        except (AssertionError, BaseExceptionGroup) as exc:  # reported by the caller
            titles = sorted(
                {f.title for f in getattr(exc, "exceptions", [exc]) if hasattr(f, "title")}
            )
            key = f"{operation.label} [{mode.value}] {response.status_code} {titles or exc}"
            if key not in seen:
                seen.add(key)
                failures.append(
                    f"{key}\n    {str(exc)[:600]}\n    {response.text[:300]}\n"
                    f"    {case.as_curl_command(headers=headers)[:600]}"
                )

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        # An operation without parameters or body has no invalid request to generate.
        assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
    return failures, sent


def _fuzz(app: FastAPI, token: str) -> tuple[list[str], int]:
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    sent = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            found, n = _fuzz_operation(operation, mode, headers)
            failures.extend(found)
            sent += n
    return failures, sent


@pytest.mark.slow
@pytest.mark.parametrize("role", ["admin", "supervisor"])
def test_openapi_fuzz(fuzz_app: tuple[FastAPI, dict[str, str]], role: str) -> None:
    app, tokens = fuzz_app
    started = time.perf_counter()
    failures, sent = _fuzz(app, tokens[role])
    elapsed = time.perf_counter() - started
    assert sent > 0
    assert not failures, (
        f"{len(failures)} failures in {sent} requests ({elapsed:.0f}s):\n" + "\n".join(failures)
    )


def test_refusals_name_their_field(fuzz_app: tuple[FastAPI, dict[str, str]]) -> None:
    from fastapi.testclient import TestClient

    app, tokens = fuzz_app
    client = TestClient(app, headers={"Authorization": f"Bearer {tokens['admin']}"})
    missing = client.get("/api/v1/alerts/5")
    assert missing.status_code == 404 and missing.json()["loc"] == ["path", "alert_id"]
    huge = client.get("/api/v1/alerts/99999999999999999999999")
    assert huge.status_code == 422 and huge.json()["detail"][0]["loc"] == ["path", "alert_id"]
    unknown = client.post("/api/v1/ingest/voice", json=[{"colour": "red"}])
    assert unknown.status_code == 422 and "colour" in unknown.json()["detail"]
    assert unknown.json()["error"] == "UnusableInputError"
    assert unknown.json()["loc"] == ["body"]
    anonymous = TestClient(app).get("/api/v1/work-orders")
    assert anonymous.status_code == 401
    assert anonymous.json()["loc"] == ["header", "authorization"]
    # Dashboards are pages, not API: the OpenAPI lists only /api/v1 routes and /healthz.
    paths = client.get("/api/openapi.json").json()["paths"]
    assert all(p.startswith("/api/v1/") or p == "/healthz" for p in paths)
