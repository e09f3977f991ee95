"""The report page in headless Debian Chromium against a real ``voxloop serve``."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser_support import BROWSER_MARKS, chromium, screenshot_path, serve, sign_in
from tests.test_web_pages import populate_lake
from voxloop.config import Settings

pytestmark = [*BROWSER_MARKS, pytest.mark.slow]

USERNAME = "report.analyst"
PASSWORD = "correct horse battery staple"
PERIOD = "2026-09"  # populate_lake writes 240 voices from 2026-09-01 over 20 days


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run ``voxloop serve`` over a small populated home; yield its base URL."""
    from voxloop.act.access import add_user
    from voxloop.store.service import make_engine, make_sessionmaker, migrate

    root = tmp_path_factory.mktemp("browser-report")
    home = root / "home"
    settings = Settings(home=home, env="test", secret_key="browser-report-key")
    populate_lake(settings)
    migrate(settings)
    engine = make_engine(settings)
    with make_sessionmaker(engine).begin() as session:
        add_user(session=session, username=USERNAME, role="analyst", password=PASSWORD)
    engine.dispose()
    with serve(home, secret_key="browser-report-key") as base:
        yield base


@pytest.fixture(scope="module")
def browser(server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium signed in through the login page."""
    profile = tmp_path_factory.mktemp("chromium-report")
    with chromium(profile, window="1440,1400", page_load_timeout=120) as driver:
        sign_in(driver, server, username=USERNAME, password=PASSWORD, path="/reports")
        yield driver


def _download(browser: Any, url: str) -> tuple[str, bytes]:
    """Fetch ``url`` with the browser's session cookie (Chromium would save it to disk)."""
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in browser.get_cookies())
    request = urllib.request.Request(url, headers={"Cookie": cookie})
    with urllib.request.urlopen(request, timeout=60) as response:
        return str(response.headers["content-type"]), response.read()


def _generate(browser: Any, *, lang: str, fmt: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    Select(browser.find_element(By.ID, "r-period")).select_by_value(PERIOD)
    Select(browser.find_element(By.ID, "r-lang")).select_by_value(lang)
    Select(browser.find_element(By.ID, "r-format")).select_by_value(fmt)
    browser.find_element(By.ID, "r-submit").click()
    # The URL changes on the redirect before the new page is there: wait for the element.
    WebDriverWait(browser, 120).until(
        lambda d: "created=" in d.current_url and d.find_elements(By.ID, "report-created")
    )
    return browser.find_element(By.ID, "report-created")


def test_report_page_generates_and_downloads(server: str, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{server}/reports?lang=zh-CN")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
    assert browser.find_element(By.TAG_NAME, "h1").text == "月度报告"
    assert browser.find_elements(By.ID, "no-reports")
    periods = [
        o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#r-period option")
    ]
    assert periods == [PERIOD]

    notice = _generate(browser, lang="zh-CN", fmt="pdf")
    assert "voxloop-report-2026-09-zh-CN.pdf" in notice.text
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.report-row")
    assert len(rows) == 1 and rows[0].get_attribute("data-format") == "pdf"
    link = rows[0].find_element(By.CSS_SELECTOR, "a.download")
    kind, body = _download(browser, link.get_attribute("href"))
    assert kind == "application/pdf" and body.startswith(b"%PDF") and len(body) > 50_000
    shot = screenshot_path(tmp_path, "reports-zh.png")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

    # Switch to English with the header link, then generate an HTML report.
    browser.find_element(By.CSS_SELECTOR, '.langswitch a[data-lang="en"]').click()
    WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    )
    assert browser.find_element(By.TAG_NAME, "h1").text == "Monthly reports"
    _generate(browser, lang="en", fmt="html")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.report-row")
    assert [r.get_attribute("data-format") for r in rows] == ["html", "pdf"]
    kind, body = _download(
        browser, rows[0].find_element(By.CSS_SELECTOR, "a.download").get_attribute("href")
    )
    html = body.decode("utf-8")
    assert kind.startswith("text/html")
    assert "Customer experience report · September 2026" in html
    assert "received 240 customer voices" in html and html.count("<svg") >= 5
    shot = screenshot_path(tmp_path, "reports-en.png")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

    # A bad month is refused on the page, naming the field.
    browser.execute_script(
        "const o = document.createElement('option'); o.value = '2026-13'; o.selected = true;"
        "document.getElementById('r-period').appendChild(o);"
    )
    browser.find_element(By.ID, "r-submit").click()
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.ID, "report-error"))
    assert "period" in browser.find_element(By.ID, "report-error").text
