"""Drive the agent-assist console (/assist) of a real ``voxloop serve`` in headless Chromium."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser_support import BROWSER_MARKS, chromium, screenshot_path, serve, sign_in
from tests.conftest import admin_client, shared_file
from tests.test_assist_session import GD_CUSTOMER, JS_CUSTOMER, customers
from voxloop.config import Settings

pytestmark = BROWSER_MARKS

USERNAME = "console.agent"
PASSWORD = "correct horse battery staple"
KEY = "console-test-key"


def transcript_voices() -> list[dict[str, Any]]:
    """One call transcript in Jiangsu and one in Guangdong."""
    text = (
        "坐席：您好，请问有什么可以帮您？\n客户：我的宽带昨天开始一直断网，到现在都没修好。"
        "\n坐席：非常抱歉，我马上为您登记报修。\n客户：麻烦快一点，我在家办公。"
    )
    return [
        {
            "id": f"call-{province}",
            "source": "hotline",
            "kind": "call_transcript",
            "received_at": "2026-12-01T08:00:00+00:00",
            "customer_id": customer,
            "region": {"province": province, "city": city},
            "channel": "hotline_10086",
            "text": text,
        }
        for province, city, customer in (
            ("江苏", "南京", JS_CUSTOMER),
            ("广东", "深圳", GD_CUSTOMER),
        )
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Serve a home with two profiles, two transcripts and the real FAQ; yield URL and token."""
    from voxloop.act.access import add_user, create_token
    from voxloop.api.app import create_app
    from voxloop.assist.kb import import_kb

    root = tmp_path_factory.mktemp("console")
    home = root / "home"
    settings = Settings(home=home, env="test", secret_key=KEY)
    app = create_app(settings)
    admin = admin_client(app)
    assert admin.post("/api/v1/ingest/customer", json=customers()).json()["stored"] == 2
    assert admin.post("/api/v1/ingest/voice", json=transcript_voices()).json()["stored"] == 2
    import_kb(settings=settings, path=shared_file("jiangsu_mobile_faq", "qa.json"))
    with app.state.sessionmaker.begin() as session:
        add_user(
            session=session, username=USERNAME, role="agent", password=PASSWORD, province="江苏"
        )
    with app.state.sessionmaker.begin() as session:
        token = create_token(session=session, username=USERNAME)
    app.state.engine.dispose()
    with serve(home, secret_key=KEY) as base:
        yield {"base": base, "token": token}


@pytest.fixture(scope="module")
def browser(server: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium signed in as the Jiangsu agent."""
    profile = tmp_path_factory.mktemp("chromium-console")
    with chromium(profile, window="1440,2200") as driver:
        sign_in(driver, server["base"], username=USERNAME, password=PASSWORD, path="/assist")
        yield driver


def _attr(browser: Any, css: str, name: str) -> str:
    from selenium.webdriver.common.by import By

    value = browser.find_element(By.CSS_SELECTOR, css).get_attribute(name)
    return str(value or "")


def test_console_live_turns_in_chromium(
    server: dict[str, str], browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(f"{server['base']}/assist?lang=zh-CN")
    assert browser.current_url.endswith("/assist?lang=zh-CN")
    assert browser.find_element(By.TAG_NAME, "h1").text == "坐席辅助台"
    assert browser.find_element(By.ID, "scope").text == "江苏"
    # Region scope: only the Jiangsu transcript is offered for replay.
    demos = {
        o.get_attribute("data-voice-id")
        for o in browser.find_elements(By.CSS_SELECTOR, "#demo option[data-voice-id]")
    }
    assert demos == {"call-江苏"}

    browser.find_element(By.ID, "customer-id").send_keys(JS_CUSTOMER)
    browser.find_element(By.ID, "new-session").click()
    WebDriverWait(browser, 30).until(lambda d: _attr(d, "#plan", "data-status") == "recommend")
    assert browser.find_element(By.ID, "plan-name").text == "5G智享套餐 98元"
    assert float(_attr(browser, "#plan-saving", "data-saving")) == 199 - 98

    Select(browser.find_element(By.ID, "role")).select_by_value("customer")
    said = "我每个月交199的套餐，流量根本用不完，想换便宜点的套餐"
    browser.find_element(By.ID, "turn-text").send_keys(said)
    browser.find_element(By.ID, "send").click()
    WebDriverWait(browser, 30).until(lambda d: _attr(d, "#scenario", "data-code") == "PLAN")
    assert _attr(browser, "#commitment", "data-id") == "C3-plan-change"
    suggestions = browser.find_elements(By.CSS_SELECTOR, "#suggestions li[data-entry-id]")
    assert suggestions and all(s.get_attribute("data-version") == "1" for s in suggestions)
    assert "条目" in suggestions[0].text
    turns = browser.find_elements(By.CSS_SELECTOR, "#turns li")
    assert [t.get_attribute("data-role") for t in turns] == ["customer"]
    assert browser.find_elements(By.CSS_SELECTOR, "#emotion svg circle.point")
    assert _attr(browser, "#escalation", "data-level") != "high"

    # Replay the built-in call: the 10080 / media threat raises the warning.
    Select(browser.find_element(By.ID, "demo")).select_by_value("builtin")
    browser.find_element(By.ID, "replay").click()
    WebDriverWait(browser, 60).until(lambda d: _attr(d, "#console", "data-replayed") == "6")
    sid = browser.find_element(By.ID, "session-id").text
    assert _attr(browser, "#escalation", "data-level") == "high"
    assert "10080" in browser.find_element(By.ID, "escalation").text
    assert _attr(browser, "#if-escalated", "data-id")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#turns li")) == 6
    assert len(browser.find_elements(By.CSS_SELECTOR, "#emotion circle.point")) == 3
    assert browser.find_element(By.ID, "error").text == ""
    shot = screenshot_path(tmp_path, "assist-console-zh.png")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

    browser.find_element(By.CSS_SELECTOR, '.langswitch a[data-lang="en"]').click()
    WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    )
    assert browser.find_element(By.TAG_NAME, "h1").text == "Agent assist console"
    # The page picks its session up again after the reload.
    WebDriverWait(browser, 30).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#turns li")) == 6
    )
    assert browser.find_element(By.ID, "session-id").text == sid
    assert _attr(browser, "#escalation", "data-level") == "high"
    assert "Region scope" in browser.find_element(By.CSS_SELECTOR, ".page-actions").text
    assert not browser.find_elements(By.CSS_SELECTOR, "form.filters")
    shot = screenshot_path(tmp_path, "assist-console-en.png")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_console_polls_a_session_fed_by_the_api(server: dict[str, str], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{server['base']}/api/v1/assist/session{path}",
            data=json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {server['token']}",
                "Content-Type": "application/json",
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data

    # The telephony system feeds the session; the agent's console only watches it.
    sid = post("", {"session_id": "call-polled", "channel": "hotline_10086"})["session_id"]
    browser.get(f"{server['base']}/assist?lang=en")
    browser.find_element(By.ID, "attach-id").send_keys(sid)
    browser.find_element(By.ID, "attach").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "session-id").text == sid)
    post(f"/{sid}/turns", {"turns": [{"role": "customer", "text": "我这个月话费怎么多扣了30块"}]})
    WebDriverWait(browser, 30).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#turns li[data-role=customer]")) == 1
    )
    WebDriverWait(browser, 30).until(lambda d: _attr(d, "#scenario", "data-code") == "BILL")
    assert "Customer" in browser.find_element(By.ID, "turns").text

    # An unknown session is named in the page's error line, nothing breaks.
    box = browser.find_element(By.ID, "attach-id")
    box.clear()
    box.send_keys("no-such-call")
    browser.find_element(By.ID, "attach").click()
    WebDriverWait(browser, 30).until(lambda d: "404" in d.find_element(By.ID, "error").text)
    assert "no-such-call" in browser.find_element(By.ID, "error").text
