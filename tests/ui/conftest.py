"""Fixtures of the browser test: one headless Chromium for the session, gateways filled through the client."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from selenium import webdriver

from tests.ui.browser import start_browser


@pytest.fixture(scope="session")
def browser() -> Iterator[webdriver.Chrome]:
    driver, profile = start_browser()
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
