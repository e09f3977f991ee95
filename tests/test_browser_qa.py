"""Drive the QA pages of a real server in headless Chromium: scores, drill-down, verdicts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_assist_qa import conversations
from tests.test_browser import CHROMEDRIVER, CHROMIUM, free_port, screenshot_path
from voxloop.config import Settings

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian chromium and chromium-driver (/usr/bin/chromium, "
        "/usr/bin/chromedriver); install them with `make browser`",
    ),
]

USERNAME = "qa.reviewer"
PASSWORD = "correct horse battery staple"
# Serve the app with the QA routes mounted even before app.py registers them.
SERVE = """
import sys, uvicorn
from fastapi import Depends
from voxloop.api.app import create_app
from voxloop.api.service import get_principal, require_page_login
from voxloop.assist import qa_views
from voxloop.config import load_settings
app = create_app(load_settings())
if "/api/v1/qa/scores" not in {getattr(r, "path", "") for r in app.routes}:
    app.include_router(qa_views.router, prefix="/api/v1", dependencies=[Depends(get_principal)])
    app.include_router(qa_views.pages, dependencies=[Depends(require_page_login)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Ingest and inspect the test conversations, then serve them; yield the base URL."""
    from voxloop.act.access import add_user
    from voxloop.assist.qa import qa_stage
    from voxloop.ingest.service import ingest_records
    from voxloop.store.service import make_engine, make_sessionmaker, migrate

    root = tmp_path_factory.mktemp("browser-qa")
    home = root / "home"
    settings = Settings(home=home, env="test", secret_key="browser-test-key")
    migrate(settings)
    ingest_records(settings=settings, kind="voice", records=conversations())
    assert qa_stage(settings=settings)["inspected"] == 5
    engine = make_engine(settings)
    with make_sessionmaker(engine).begin() as session:
        add_user(session=session, username=USERNAME, role="supervisor", password=PASSWORD)
    engine.dispose()
    port = free_port()
    env = {
        **os.environ,
        "VOXLOOP_HOME": str(home),
        "VOXLOOP_ENV": "test",
        "VOXLOOP_SECRET_KEY": "browser-test-key",
    }
    env.pop("VOXLOOP_DATABASE_URL", None)
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(port)],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {(root / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not answer /healthz within 60 s")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser(server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Start headless Chromium and sign in as the QA reviewer."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1440,2200",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-qa')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        driver.get(f"{server}/qa")
        assert "/login" in driver.current_url, "an anonymous visitor must be sent to /login"
        driver.find_element(By.ID, "username").send_keys(USERNAME)
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "form.login-form button[type=submit]").click()
        WebDriverWait(driver, 30).until(lambda d: "/login" not in d.current_url)
        yield driver
    finally:
        driver.quit()


def test_qa_scores_drill_down_and_verdict_in_chromium(
    server: str, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{server}/qa?lang=zh-CN")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
    assert browser.find_element(By.TAG_NAME, "h1").text == "智能质检"
    kpi = browser.find_element(By.CSS_SELECTOR, '[data-kpi="inspected"]')
    assert kpi.text == "5"
    rules = browser.find_elements(By.CSS_SELECTOR, "#qa-rules tbody tr")
    assert rules[0].get_attribute("data-rule") in {"invite_rating", "self_intro"}
    agents = [
        r.get_attribute("data-agent")
        for r in browser.find_elements(By.CSS_SELECTOR, "#qa-agents tbody tr")
    ]
    assert agents[-1] == "A001"  # the best agent comes last
    shot = screenshot_path(tmp_path, "qa-zh.png")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

    # Worst rule drill: only conversations that hit prohibited_words remain.
    browser.find_element(By.CSS_SELECTOR, '#qa-rules tr[data-rule="prohibited_words"] a').click()
    WebDriverWait(browser, 30).until(lambda d: "rule_id=prohibited_words" in d.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "#qa-conversations tr.qa-row")
    assert {r.get_attribute("data-voice-id") for r in rows} == {"q2", "q5"}

    # Drill to a conversation: the turns that hit rules are highlighted.
    browser.find_element(By.CSS_SELECTOR, '#qa-conversations tr[data-voice-id="q2"] a').click()
    WebDriverWait(browser, 30).until(lambda d: d.current_url.split("?")[0].endswith("/qa/q2"))
    marked = browser.find_elements(By.CSS_SELECTOR, "#qa-transcript li.qa-turn.hit")
    assert [m.get_attribute("data-turn") for m in marked] == ["1", "2", "3", "5"]
    turn2 = browser.find_element(By.ID, "turn-2")
    color = turn2.value_of_css_property("border-left-color")
    assert color.replace(" ", "") in ("rgba(192,57,43,1)", "rgb(192,57,43)")
    assert "不归我管" in turn2.text

    # Overturn a hit through the form on q4 (94 points): the verdict shows, the score rises.
    browser.get(f"{server}/qa/q4")
    assert browser.find_element(By.ID, "qa-score").text == "94"
    row = browser.find_element(By.CSS_SELECTOR, 'tr.qa-hit[data-rule="invite_rating"]')
    row.find_element(By.NAME, "note").send_keys("invited on the chat survey card")
    row.find_element(By.CSS_SELECTOR, 'button[value="overturn"]').click()
    WebDriverWait(browser, 30).until(lambda d: "saved=overturn" in d.current_url)
    row = browser.find_element(By.CSS_SELECTOR, 'tr.qa-hit[data-rule="invite_rating"]')
    assert row.get_attribute("data-verdict") == "overturn"
    assert browser.find_element(By.ID, "qa-saved").is_displayed()
    assert browser.find_element(By.ID, "qa-score").text == "97"

    # English.
    browser.find_element(By.CSS_SELECTOR, '.langswitch a[data-lang="en"]').click()
    WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    )
    assert "Transcript" in browser.find_element(By.ID, "qa-transcript").text
    assert "Overturned" in browser.find_element(By.ID, "qa-hits").text
    shot = screenshot_path(tmp_path, "qa-conversation-en.png")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
