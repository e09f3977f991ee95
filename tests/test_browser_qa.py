"""Drive the QA pages of a real server in headless Chromium: scores, drill-down, verdicts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser_support import BROWSER_MARKS, chromium, screenshot_path, serve, sign_in
from tests.test_assist_qa import conversations
from voxloop.config import Settings

pytestmark = BROWSER_MARKS

USERNAME = "qa.reviewer"
PASSWORD = "correct horse battery staple"


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
    with serve(home, secret_key="browser-test-key") as base:
        yield base


@pytest.fixture(scope="module")
def browser(server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Start headless Chromium and sign in as the QA reviewer."""
    with chromium(tmp_path_factory.mktemp("chromium-qa"), window="1440,2200") as driver:
        sign_in(driver, server, username=USERNAME, password=PASSWORD, path="/qa")
        yield driver


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
