"""What the work-order API's speed-ups must keep: revocation still bites, bounds hold."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from tests.test_act_orders import clean_act_tables
from voxloop.act.access import add_user, create_token, revoke_token
from voxloop.api.app import create_app
from voxloop.api.service import TokenCache
from voxloop.store.service import make_engine, make_sessionmaker, migrate


@pytest.fixture
def api(any_db_settings):
    migrate(any_db_settings)
    engine = make_engine(any_db_settings)
    clean_act_tables(engine)
    with make_sessionmaker(engine)() as s:
        add_user(session=s, username="admin", role="admin")
        token = create_token(session=s, username="admin")
        s.commit()
    engine.dispose()
    app = create_app(any_db_settings, run_migrations=False)
    with TestClient(app) as client:
        yield app, client, token
    app.state.engine.dispose()


def test_revoked_token_is_refused_once_its_cache_entry_expires(api):
    app, client, token = api
    app.state.token_cache = TokenCache(seconds=0.3)
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/work-orders", headers=headers).status_code == 200
    with app.state.sessionmaker() as s:
        revoke_token(session=s, token_id=token[len("vx_") :].partition("_")[0])
        s.commit()
    # Within the cache's lifetime the server may still accept it; after it, never.
    time.sleep(0.4)
    assert client.get("/api/v1/work-orders", headers=headers).status_code == 401


def test_wrong_secret_is_refused_even_with_the_right_token_cached(api):
    _app, client, token = api
    good = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/work-orders", headers=good).status_code == 200
    forged = {"Authorization": f"Bearer {token[:-2]}xx"}
    for _ in range(2):  # a refused token is not cached either
        assert client.get("/api/v1/work-orders", headers=forged).status_code == 401


def test_huge_offset_and_task_id_are_422_not_500(api):
    _app, client, token = api
    headers = {"Authorization": f"Bearer {token}"}
    r = client.get("/api/v1/work-orders", params={"offset": 2**70}, headers=headers)
    assert r.status_code == 422
    r = client.post(
        f"/api/v1/verification-tasks/{2**70}/answer", json={"satisfied": True}, headers=headers
    )
    assert r.status_code == 422


def test_conflicting_and_read_requests_leave_no_open_transaction(api):
    app, client, token = api
    headers = {"Authorization": f"Bearer {token}"}
    order = client.post("/api/v1/work-orders", json={"title": "t"}, headers=headers).json()
    url = f"/api/v1/work-orders/{order['id']}"
    assert client.get(url, headers=headers).status_code == 200
    stale = {"to": "in_progress", "version": 7}
    assert client.post(f"{url}/transition", json=stale, headers=headers).status_code == 409
    # Every pooled connection went back clean: nothing is checked out after the requests.
    assert app.state.engine.pool.checkedout() == 0
    fresh = {"to": "in_progress", "version": 1}
    r = client.post(f"{url}/transition", json=fresh, headers=headers)
    assert r.status_code == 200 and r.json()["version"] == 2
