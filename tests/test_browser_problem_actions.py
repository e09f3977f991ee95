"""Open a work order from a problem in headless Debian Chromium against a real ``voxloop serve``.

The supervisor signs in, opens the problem page, creates the pre-filled order (routed by
the routing rules), links a recent voice, marks the order resolved with a fix note and
sees the re-survey of every affected customer in the verification panel.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.browser_support import BROWSER_MARKS, chromium, screenshot_path, serve, sign_in
from voxloop.config import Settings

pytestmark = BROWSER_MARKS

USERNAME = "browser.supervisor"
PASSWORD = "correct horse battery staple"
SECRET = "browser-actions-key"
TEXTS = [
    "我想把5G套餐降档，营业厅拒绝办理",
    "申请5G套餐降档被拒绝了，说合约没到期",
    "5G套餐降档为什么不给办，太不合理",
    "想办5G套餐降档，客服说不行",
    "我想把5G套餐降档，营业厅拒绝办理",
    "5G套餐降档申请提交三次都被驳回",
    "打了三次电话要求5G套餐降档，一直推脱",
]


def _records() -> list[dict[str, Any]]:
    start = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
    return [
        {
            "id": f"b{i:03d}",
            "source": "browser-test",
            "kind": "complaint",
            "received_at": (start + timedelta(hours=i)).isoformat(),
            "customer_id": f"cust{i:03d}",
            "province": "江苏",
            "city": "南京" if i % 2 else "苏州",
            "channel": "hotline_10086",
            "text": text,
            "attributes": {"scenario": "PLAN"},
        }
        for i, text in enumerate(TEXTS)
    ]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Run ``voxloop serve`` over a home with one grouped problem; yield (URL, problem id)."""
    from sqlalchemy import select

    from voxloop.act.access import add_user
    from voxloop.detect.models import Problem
    from voxloop.detect.service import detect_stage
    from voxloop.ingest.service import ingest_path
    from voxloop.store.service import make_engine, make_sessionmaker, migrate

    root = tmp_path_factory.mktemp("browser-actions")
    home = root / "home"
    settings = Settings(home=home, env="test", secret_key=SECRET)
    migrate(settings)
    source = root / "voices.jsonl"
    source.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _records()), encoding="utf-8"
    )
    ingest_path(settings=settings, path=source, kind="voice")
    detect_stage(settings=settings)
    engine = make_engine(settings)
    with make_sessionmaker(engine).begin() as session:
        add_user(session=session, username=USERNAME, role="supervisor", password=PASSWORD)
    with make_sessionmaker(engine)() as session:
        problem = max(session.scalars(select(Problem)), key=lambda p: p.n_voices)
        problem_id = problem.id
    engine.dispose()
    with serve(home, secret_key=SECRET) as base:
        yield base, problem_id


@pytest.fixture(scope="module")
def browser(served: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium signed in as the supervisor through the login page."""
    with chromium(tmp_path_factory.mktemp("chromium-actions")) as driver:
        sign_in(driver, served[0], username=USERNAME, password=PASSWORD, path="/problems")
        yield driver


def test_create_link_resolve_from_a_problem_in_chromium(
    served: tuple[str, str], browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, problem_id = served
    browser.get(f"{base}/problems/{problem_id}?lang=zh-CN")
    title = browser.find_element(By.ID, "problem-title").text
    assert "套餐降档" in title and "·" not in title  # a phrase, not a bag of keywords
    cases = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#typical-cases li")]
    assert len(cases) == len(set(cases)) >= 2  # distinct voices

    # The create form is open and pre-filled from the problem.
    assert browser.find_element(By.ID, "order-title").get_attribute("value") == title
    description = browser.find_element(By.ID, "order-description").get_attribute("value")
    assert "典型案例" in description
    assert "尚未创建工单" in browser.find_element(By.ID, "source-orders").text
    browser.find_element(By.ID, "create-order-submit").click()
    WebDriverWait(browser, 30).until(lambda d: "notice=created" in d.current_url)
    assert browser.find_element(By.ID, "action-notice").get_attribute("data-notice") == "created"
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.source-order")
    assert len(rows) == 1 and rows[0].get_attribute("data-state") == "new"
    assert "business" in rows[0].text  # routed by the plans rule
    shot = screenshot_path(tmp_path, "problem-order-zh.png")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

    # Every voice of the problem is linked at creation, so nothing is left to tick.
    browser.find_element(By.CSS_SELECTOR, "#link-voices summary").click()
    boxes = browser.find_elements(By.CSS_SELECTOR, "#link-voices-form input[name=voice]")
    assert boxes and all(not b.is_enabled() for b in boxes)

    # Mark resolved with a fix note; the panel lists a re-survey per affected customer.
    browser.find_element(By.ID, "fix-note").send_keys("合约期内允许降档，已通知营业厅")
    browser.find_element(By.ID, "resolve-submit").click()
    WebDriverWait(browser, 30).until(lambda d: "notice=resolved" in d.current_url)
    row = browser.find_element(By.CSS_SELECTOR, "tr.source-order")
    assert row.get_attribute("data-state") == "resolved"
    assert "合约期内允许降档" in row.text
    panel = browser.find_element(By.ID, "verification")
    customers = int(panel.get_attribute("data-tasks"))
    assert customers >= 5 and int(panel.get_attribute("data-pending")) == customers
    tasks = browser.find_elements(By.CSS_SELECTOR, "tr.verification-task")
    assert len(tasks) == customers and "满意度复评" in tasks[0].text
    assert not browser.find_elements(By.ID, "resolve-form")  # no open order left

    # The same page in English.
    browser.get(f"{base}/problems/{problem_id}?lang=en")
    assert "Verification of the fix" in browser.find_element(By.ID, "actions").text
    shot = screenshot_path(tmp_path, "problem-order-en.png")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
