"""Shared pieces of the browser tests: a real ``voxloop serve`` and headless Debian Chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

#: ``pytestmark`` of every browser test module.
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian chromium and chromium-driver (/usr/bin/chromium, "
        "/usr/bin/chromedriver); `make test` installs them where it can",
    ),
]


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def screenshot_path(tmp_path: Path, name: str) -> Path:
    """Where to save a screenshot: ``$VOXLOOP_SCREENSHOTS`` if set, else the test's tmp dir."""
    folder = Path(os.environ.get("VOXLOOP_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


@contextmanager
def serve(home: Path, *, secret_key: str, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``voxloop serve`` over ``home`` in a subprocess; yield its base URL."""
    root = home.parent
    port = free_port()
    env = {
        **os.environ,
        "VOXLOOP_HOME": str(home),
        "VOXLOOP_ENV": "test",
        "VOXLOOP_SECRET_KEY": secret_key,
        **(extra_env or {}),
    }
    env.pop("VOXLOOP_DATABASE_URL", None)
    log_path = root / f"server-{port}.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from voxloop.cli.main import main; main()",
            *("serve", "--host", "127.0.0.1", "--port", str(port)),
        ],
        cwd=root,  # no voxloop.toml from the repository
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"voxloop serve exited with {proc.returncode}: " + log_path.read_text()
                )
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("voxloop serve did not answer /healthz within 60 s")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextmanager
def chromium(
    profile: Path,
    *,
    downloads: Path | None = None,
    window: str = "1440,2600",
    page_load_timeout: int = 60,
) -> Iterator[Any]:
    """Start headless Chromium with a fresh profile (and a download folder); yield the driver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

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
        f"--window-size={window}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    if downloads is not None:
        options.add_experimental_option(
            "prefs",
            {
                "download.default_directory": str(downloads),
                "download.prompt_for_download": False,
                "safebrowsing.enabled": False,
            },
        )
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(page_load_timeout)
    try:
        if downloads is not None:
            driver.execute_cdp_cmd(
                "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
            )
        yield driver
    finally:
        driver.quit()


def sign_in(driver: Any, base: str, *, username: str, password: str, path: str = "/") -> None:
    """Open ``path``, get sent to /login, and sign in through the form."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base}{path}")
    assert "/login" in driver.current_url, "an anonymous visitor must be sent to /login"
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form.login-form button[type=submit]").click()
    WebDriverWait(driver, 30).until(lambda d: "/login" not in d.current_url)
