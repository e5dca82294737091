"""A headless Chromium for tests that look at a page: Debian's chromium and chromium-driver.

Both programs come from the Debian packages scripts/install-system-deps.sh installs; Selenium is
pointed at them explicitly, so it never looks for (or downloads) a browser or driver of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@contextmanager
def headless_chromium() -> Iterator[WebDriver]:
    """A headless Chromium driven over WebDriver, quit on exit; fails naming the missing
    package when chromium or chromium-driver is not installed."""
    for program, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not program.exists():
            raise RuntimeError(
                f"{program} is missing: install Debian's {package} "
                "(scripts/install-system-deps.sh, run by make install)"
            )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,900"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
