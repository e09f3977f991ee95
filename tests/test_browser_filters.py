"""The filter bar and an export download in headless Debian Chromium against `voxloop serve`."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.browser_support import BROWSER_MARKS, chromium, screenshot_path, sign_in
from tests.test_browser import (
    PASSWORD,
    USERNAME,
    server,  # noqa: F401 - the real `voxloop serve` fixture
)
from tests.test_web_pages import voice_rows

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder Chromium saves downloads into."""
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def chrome(server: str, downloads: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:  # noqa: F811
    """Headless Chromium that saves downloads without asking, signed in as the analyst."""
    profile = tmp_path_factory.mktemp("chromium-filters")
    with chromium(profile, downloads=downloads, window="1440,2000") as driver:
        sign_in(driver, server, username=USERNAME, password=PASSWORD)
        yield driver


def _local_day(row: dict[str, object]) -> str:
    return (row["received_at"] + timedelta(hours=8)).date().isoformat()  # type: ignore[operator]


def test_filter_bar_cascade_and_shareable_url(
    server: str,  # noqa: F811
    chrome: Any,
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    chrome.get(f"{server}/voices?lang=en")
    bar = chrome.find_element(By.ID, "filter-bar")
    city = chrome.find_element(By.ID, "f-city")
    assert not city.is_enabled()  # no province yet
    Select(chrome.find_element(By.ID, "f-province")).select_by_value("江苏")
    # The script fetches the province's cities and enables the city list.
    WebDriverWait(chrome, 20).until(
        lambda d: (
            {o.get_attribute("value") for o in d.find_elements(By.CSS_SELECTOR, "#f-city option")}
            == {"", "南京", "苏州"}
        )
    )
    assert city.is_enabled()
    Select(city).select_by_value("南京")
    WebDriverWait(chrome, 20).until(
        lambda d: (
            {
                o.get_attribute("value")
                for o in d.find_elements(By.CSS_SELECTOR, "#f-district option")
            }
            == {"", "玄武区", "鼓楼区"}
        )
    )
    # The calendar is the native date input; set its value as a picked date would.
    for field, day in (("f-from", "2026-09-02"), ("f-to", "2026-09-12")):
        chrome.execute_script(
            "arguments[0].value = arguments[1];arguments[0].dispatchEvent(new Event('change'))",
            chrome.find_element(By.ID, field),
            day,
        )
    Select(chrome.find_element(By.ID, "f-channel")).select_by_value("hotline_10086")
    bar.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(chrome, 30).until(lambda d: "city=" in d.current_url)

    query = parse_qs(urlparse(chrome.current_url).query, keep_blank_values=True)
    assert urlparse(chrome.current_url).path == "/voices"
    assert query == {
        "from": ["2026-09-02"],
        "to": ["2026-09-12"],
        "province": ["江苏"],
        "city": ["南京"],
        "channel": ["hotline_10086"],
    }  # empty fields stay out of the shared link
    expected = sum(
        1
        for r in voice_rows(240)
        if r["city"] == "南京"
        and r["channel"] == "hotline_10086"
        and "2026-09-02" <= _local_day(r) <= "2026-09-12"
    )
    total = chrome.find_element(By.CSS_SELECTOR, ".result-count").get_attribute("data-total")
    assert int(total) == expected > 0
    shot = screenshot_path(tmp_path, "filter-bar-voices.png")
    assert chrome.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

    # The same link opened afresh (as a colleague would) shows the same filters and rows.
    shared = chrome.current_url
    chrome.get("about:blank")
    chrome.get(shared)
    assert chrome.find_element(By.ID, "f-from").get_attribute("value") == "2026-09-02"
    assert Select(chrome.find_element(By.ID, "f-city")).first_selected_option.text == "南京"
    assert chrome.find_element(By.CSS_SELECTOR, ".result-count").get_attribute("data-total") == str(
        expected
    )

    # Another page: the bar is there, and submitting stays on that page.
    chrome.get(f"{server}/understand?lang=en")
    Select(chrome.find_element(By.ID, "f-sentiment")).select_by_value("negative")
    chrome.find_element(By.CSS_SELECTOR, "#filter-bar button[type=submit]").click()
    WebDriverWait(chrome, 30).until(lambda d: "sentiment=negative" in d.current_url)
    assert urlparse(chrome.current_url).path == "/understand"
    sentiments = [
        row.text for row in chrome.find_elements(By.CSS_SELECTOR, "section table tbody tr")
    ]
    assert any(text.startswith("Negative") for text in sentiments)


def _wait_for_file(folder: Path, suffix: str, timeout: float = 30) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [p for p in folder.iterdir() if p.suffix == suffix]
        if done:
            return done[0]
        time.sleep(0.2)
    raise AssertionError(f"no {suffix} download in {folder}: {list(folder.iterdir())}")


def test_export_download_in_chromium(
    server: str,  # noqa: F811
    chrome: Any,
    downloads: Path,
) -> None:
    from openpyxl import load_workbook
    from selenium.webdriver.common.by import By

    chrome.get(f"{server}/voices?lang=en&province=%E6%B1%9F%E8%8B%8F&scenario=BILL")
    total = int(chrome.find_element(By.CSS_SELECTOR, ".result-count").get_attribute("data-total"))
    assert total > 0
    chrome.find_element(
        By.CSS_SELECTOR, '.export-links[data-table="voices"] a[data-format="csv"]'
    ).click()
    saved = _wait_for_file(downloads, ".csv")
    raw = saved.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert len(rows) == total
    assert {r["province"] for r in rows} == {"江苏"} and {r["scenario"] for r in rows} == {"BILL"}

    chrome.find_element(
        By.CSS_SELECTOR, '.export-links[data-table="voices"] a[data-format="xlsx"]'
    ).click()
    book = load_workbook(_wait_for_file(downloads, ".xlsx"))
    sheet_rows = list(book.active.iter_rows(values_only=True))
    assert len(sheet_rows) == total + 1
    assert sheet_rows[0][0] == "id" and {r[0] for r in sheet_rows[1:]} == {r["id"] for r in rows}
