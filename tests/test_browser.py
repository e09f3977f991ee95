"""Drive the real dashboard (``voxloop serve``) in headless Debian Chromium via selenium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser_support import BROWSER_MARKS, chromium, screenshot_path, serve, sign_in
from tests.test_web_pages import local_days, populate_lake
from voxloop.config import Settings

pytestmark = BROWSER_MARKS

USERNAME = "browser.analyst"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run ``voxloop serve`` over a small populated home; yield its base URL."""
    home = tmp_path_factory.mktemp("browser") / "home"
    settings = Settings(home=home, env="test", secret_key="browser-test-key")
    populate_lake(settings)
    # Outside dev mode every page needs a login: the browser signs in as this analyst.
    from voxloop.act.access import add_user
    from voxloop.store.service import make_engine, make_sessionmaker, migrate

    migrate(settings)
    engine = make_engine(settings)
    with make_sessionmaker(engine).begin() as session:
        add_user(session=session, username=USERNAME, role="analyst", password=PASSWORD)
    engine.dispose()
    with serve(home, secret_key="browser-test-key") as base:
        yield base


@pytest.fixture(scope="module")
def browser(server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Start headless Chromium with a fresh profile and sign in through the login page."""
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        sign_in(driver, server, username=USERNAME, password=PASSWORD)
        yield driver


def test_overview_in_chromium(server: str, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{server}/?lang=zh-CN")
    WebDriverWait(browser, 30).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "svg.chart-line"))
    )
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
    assert browser.find_element(By.TAG_NAME, "h1").text == "客户之声总览"

    # Charts are laid out (non-zero size) and carry their data.
    line = browser.find_element(By.CSS_SELECTOR, "#volume svg.chart-line")
    assert line.size["width"] > 300 and line.size["height"] > 100
    points = line.find_elements(By.CSS_SELECTOR, "circle.point")
    assert len(points) == 5 * local_days()
    assert sum(float(p.get_attribute("data-value")) for p in points) == 240
    bars = browser.find_elements(By.CSS_SELECTOR, "#regions rect.bar")
    assert {b.get_attribute("data-label") for b in bars} >= {"江苏", "广东", "浙江"}
    assert all(float(b.get_attribute("width")) > 0 for b in bars)
    assert browser.find_elements(By.CSS_SELECTOR, "#scenarios rect.bar")
    assert browser.find_elements(By.CSS_SELECTOR, "#sentiment circle.point")

    rows = browser.find_elements(By.CSS_SELECTOR, "#latest tr.voice-row")
    assert len(rows) == 12
    assert rows[0].get_attribute("data-voice-id") == "v0239"
    assert browser.find_elements(By.CSS_SELECTOR, "#latest .pii")
    shot = screenshot_path(tmp_path, "overview-zh.png")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

    # Switch language with the header link; the page re-renders in English.
    browser.find_element(By.CSS_SELECTOR, '.langswitch a[data-lang="en"]').click()
    WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    )
    assert browser.find_element(By.TAG_NAME, "h1").text == "Voice of customer overview"
    assert "Voice volume by channel" in browser.find_element(By.ID, "volume").text
    shot = screenshot_path(tmp_path, "overview-en.png")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

    # Drill down from a province bar to its cities.
    browser.find_element(By.CSS_SELECTOR, '#regions g[data-label="江苏"] a').click()
    WebDriverWait(browser, 30).until(lambda d: "province=" in d.current_url)
    cities = browser.find_elements(By.CSS_SELECTOR, "#regions rect.bar")
    assert {b.get_attribute("data-label") for b in cities} == {"南京", "苏州"}
    assert "Voices by city" in browser.find_element(By.ID, "regions").text


def test_voices_page_filters_in_chromium(server: str, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(f"{server}/voices?lang=en")
    total = browser.find_element(By.CSS_SELECTOR, ".result-count")
    assert total.get_attribute("data-total") == "240"
    Select(browser.find_element(By.ID, "f-scenario")).select_by_value("HBB")
    browser.find_element(By.ID, "f-q").send_keys("话费")
    browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    WebDriverWait(browser, 30).until(lambda d: "scenario=HBB" in d.current_url)
    filtered = int(
        browser.find_element(By.CSS_SELECTOR, ".result-count").get_attribute("data-total")
    )
    assert 0 < filtered < 240
    codes = browser.find_elements(By.CSS_SELECTOR, "tr.voice-row .scenario-code")
    assert codes and {c.text for c in codes} == {"HBB"}
    shot = screenshot_path(tmp_path, "voices-en.png")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
