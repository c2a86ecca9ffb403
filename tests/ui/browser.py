"""Headless Chromium (Debian's ``chromium`` and ``chromium-driver`` packages) driven by selenium.

Nothing is downloaded at run time: the driver and the browser are the Debian binaries, and Chromium's own
background connections are turned off (the build machine reaches no host but the package registries).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = "apt-get install -y chromium chromium-driver (make test does it)"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1000",
)


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    status: int | None


def start_browser() -> tuple[webdriver.Chrome, str]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            pytest.fail(f"{path} is missing: the browser test needs `{INSTALL}`.", pytrace=False)
    profile = tempfile.mkdtemp(prefix="ts-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER)), profile


def network_calls(driver: webdriver.Chrome) -> list[Call]:
    """Requests sent since the last call (the performance log is drained on reading), with their status."""
    seen: dict[str, list[Any]] = {}
    for entry in driver.get_log("performance"):  # type: ignore[no-untyped-call]  # selenium is untyped
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            seen[params["requestId"]] = [params["request"]["method"], params["request"]["url"], None]
        elif message["method"] == "Network.responseReceived" and params["requestId"] in seen:
            seen[params["requestId"]][2] = params["response"]["status"]
    return [Call(*v) for v in seen.values()]
