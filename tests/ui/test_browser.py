"""The stock MLflow web app, served by the gateway, in a real browser (headless Chromium), in both modes.

Every page opened must show what the client logged and no error: no error text or toast on the page, and
no call from the page to the gateway answered with an error status (the one exception is
``users/current``, which the stock server without authentication answers 404 as well). A screenshot of
each page is kept under ``test-artifacts/ui/<mode>/``.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import Gateway, official_client
from tests.ui.browser import network_calls
from tests.ui.fill import EXPERIMENT, REGISTERED, RUNS, TEXT, Logged, fill

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
WAIT_SECONDS = 30
SETTLE_SECONDS = 1.5  # after the expected content shows, for late calls and toasts
ERROR_TEXTS = (
    "Experiment load error",
    "Can't load",
    "Error while loading",
    "Error during",
    "ENDPOINT_NOT_FOUND",
    "NOT_IMPLEMENTED",
    "INTERNAL_ERROR",
    "Received status code",
    "Request failed",
    "Something went wrong",
    "not found",
)
# Calls the stock server answers with an error too: no authentication configured; the create dialog checks
# that the new name is free.
EXPECTED_ERRORS = ("/ajax-api/2.0/mlflow/users/current", "/ajax-api/2.0/mlflow/experiments/get-by-name?")
TOASTS = ".du-bois-light-notification-notice, .ant-notification-notice, [class*='notification-notice']"
NAMES = list(RUNS)


@dataclass
class Page:
    name: str
    path: Callable[[Logged], str]
    texts: Callable[[Logged], list[str]]
    check: Callable[[webdriver.Chrome, Logged], None] = field(default=lambda d, logged: None)


def _body(driver: webdriver.Chrome) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


def _wait(driver: webdriver.Chrome, what: str, condition: Callable[[webdriver.Chrome], object]) -> None:
    try:
        # a node the app re-rendered between finding it and reading it is stale: look again at the next poll
        WebDriverWait(
            driver, WAIT_SECONDS, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)
        ).until(condition)
    except TimeoutException:
        raise AssertionError(
            f"{what} did not appear within {WAIT_SECONDS}s; page text:\n{_body(driver)[:1500]}"
        ) from None


def _click(driver: webdriver.Chrome, text: str) -> None:
    xpath = f"//*[normalize-space(text())='{text}']"
    _wait(driver, f"'{text}'", lambda d: d.find_elements(By.XPATH, xpath))
    driver.find_element(By.XPATH, xpath).click()


def _charts(count: int) -> Callable[[webdriver.Chrome, Logged], None]:
    def check(driver: webdriver.Chrome, logged: Logged) -> None:
        # plotly draws each metric chart as an SVG with one trace (path) per run
        _wait(
            driver,
            f"{count} metric charts",
            lambda d: len(d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")) >= count,
        )
        _wait(driver, "chart lines", lambda d: d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .scatterlayer path"))

    return check


def _artifacts(driver: webdriver.Chrome, logged: Logged) -> None:
    _click(driver, "notes")
    _click(driver, "hello.txt")
    _wait(driver, "the text preview", lambda d: TEXT in _body(d))
    _click(driver, "plots")
    _click(driver, "curve.png")
    _wait(
        driver,
        "the image preview",
        lambda d: any(
            (i.get_attribute("src") or "").startswith("blob:") and i.size["width"] > 50
            for i in d.find_elements(By.TAG_NAME, "img")
        ),
    )
    _click(driver, "tables")
    _click(driver, "results.json")
    _wait(driver, "the table preview", lambda d: "col_a" in _body(d) and "col_b" in _body(d))
    _click(driver, "sk_model")
    # a directory holding an MLmodel file is shown as a model (it offers registration); its MLmodel previews
    _wait(driver, "the model view", lambda d: "Register model" in _body(d))
    _click(driver, "MLmodel")
    _wait(driver, "the MLmodel preview", lambda d: "flavors:" in _body(d) and "sklearn_version" in _body(d))
    # the download link of a file: the same request the browser's download makes
    downloaded = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"fetch('get-artifact?path=notes%2Fhello.txt&run_uuid={logged.first}').then(r => r.text()).then(done);"
    )
    assert downloaded == TEXT + "\n"


CREATED, RENAMED, DESCRIPTION = "ui-created", "ui-renamed", "Edited in the browser"
CHECKBOX = "experiment-list-item-check-box"


def _shown(driver: webdriver.Chrome, by: str, selector: str) -> bool:
    return any(e.is_displayed() for e in driver.find_elements(by, selector))


def _base(driver: webdriver.Chrome) -> str:
    return str(driver.current_url).split("/#", 1)[0]


def _experiments_edit(driver: webdriver.Chrome, logged: Logged) -> None:
    """Search, create, rename (edit) and delete experiments from the experiments list."""
    driver.find_element(By.CSS_SELECTOR, "[data-testid=search-experiment-input]").send_keys(EXPERIMENT, Keys.ENTER)
    _wait(driver, "the search result", lambda d: EXPERIMENT in _body(d) and "Default" not in _body(d))
    driver.find_element(By.CSS_SELECTOR, "[data-testid=create-experiment-button]").click()
    _wait(driver, "the create dialog", lambda d: d.find_elements(By.ID, "experimentName"))
    driver.find_element(By.ID, "experimentName").send_keys(CREATED)
    driver.find_element(By.XPATH, "//*[@role='dialog']//button[normalize-space(.)='Create']").click()
    _wait(driver, "the new experiment's page", lambda d: CREATED in _body(d) and "Overview" in _body(d))
    driver.find_element(By.CSS_SELECTOR, "[data-testid=overflow-menu-trigger]").click()
    _click(driver, "Edit experiment")
    _wait(driver, "the edit dialog", lambda d: d.find_elements(By.ID, "mlflow.experiment.edit.name"))
    name = driver.find_element(By.ID, "mlflow.experiment.edit.name")
    name.send_keys(Keys.CONTROL, "a")
    name.send_keys(RENAMED)
    driver.find_element(By.XPATH, "//*[@role='dialog']//button[normalize-space(.)='Save']").click()
    _wait(
        driver,
        "the renamed experiment",
        lambda d: RENAMED in _body(d) and not _shown(d, By.ID, "mlflow.experiment.edit.name"),
    )
    driver.get(_base(driver) + "/#/experiments")
    row_box = f"//*[@role='row'][.//*[normalize-space(text())='{RENAMED}']]//input[@data-testid='{CHECKBOX}']"
    _wait(driver, "the renamed experiment in the list", lambda d: d.find_elements(By.XPATH, row_box))
    driver.find_element(By.XPATH, row_box).click()
    driver.find_element(By.CSS_SELECTOR, "[data-testid=delete-experiments-button]").click()
    _wait(
        driver,
        "the delete dialog",
        lambda d: d.find_elements(By.XPATH, "//*[@role='dialog']//button[normalize-space(.)='Delete']"),
    )
    driver.find_element(By.XPATH, "//*[@role='dialog']//button[normalize-space(.)='Delete']").click()
    _wait(
        driver,
        "the list without the deleted experiment",
        lambda d: not d.find_elements(By.XPATH, row_box) and EXPERIMENT in _body(d),
    )


def _edit_description(driver: webdriver.Chrome, logged: Logged) -> None:
    driver.find_element(By.CSS_SELECTOR, "[aria-label='Edit description']").click()
    _wait(driver, "the description editor", lambda d: d.find_elements(By.CSS_SELECTOR, "textarea.mde-text"))
    editor = driver.find_element(By.CSS_SELECTOR, "textarea.mde-text")
    editor.send_keys(Keys.CONTROL, "a")
    editor.send_keys(DESCRIPTION)
    driver.find_element(By.XPATH, "//button[normalize-space(.)='Save']").click()
    _wait(
        driver,
        "the saved description",
        lambda d: DESCRIPTION in _body(d) and not _shown(d, By.CSS_SELECTOR, "textarea.mde-text"),
    )


def _model_artifacts(driver: webdriver.Chrome, logged: Logged) -> None:
    _click(driver, "MLmodel")
    _wait(
        driver, "the logged model's MLmodel preview", lambda d: "flavors:" in _body(d) and logged.model_id in _body(d)
    )


def _metric_path(logged: Logged) -> str:
    q = urllib.parse.quote
    return (
        f"/#/metric?runs={json.dumps(logged.run_ids)}&metric={q(json.dumps('loss'))}"
        f"&experiments={json.dumps([logged.experiment_id])}&plot_metric_keys={q(json.dumps(['loss']))}"
        "&plot_layout={}&x_axis=step&y_axis_scale=linear&line_smoothness=1&show_point=false"
        "&deselected_curves=[]&last_linear_y_axis_range=[]"
    ).replace(" ", "")


PAGES = [
    Page("experiments", lambda x: "/#/experiments", lambda x: [EXPERIMENT, "Default"]),
    Page("runs-table", lambda x: f"/#/experiments/{x.experiment_id}/runs", lambda x: NAMES),
    Page(
        "runs-charts",
        lambda x: f"/#/experiments/{x.experiment_id}/runs?compareRunsMode=CHART",
        lambda x: [*NAMES, "loss", "accuracy"],
        _charts(2),
    ),
    Page(
        "compare",
        lambda x: f"/#/compare-runs?runs={json.dumps(x.run_ids)}&experiments={json.dumps([x.experiment_id])}".replace(
            " ", ""
        ),
        lambda x: ["Comparing 2 Runs", *NAMES, "lr", "0.01", "0.05"],
    ),
    Page(
        "run",
        lambda x: f"/#/experiments/{x.experiment_id}/runs/{x.first}",
        lambda x: [NAMES[0], f"Description of {NAMES[0]}", "lr", "0.01", "optimizer", "adam", "loss", "accuracy"],
    ),
    Page(
        "run-metrics",
        lambda x: f"/#/experiments/{x.experiment_id}/runs/{x.first}/model-metrics",
        lambda x: [NAMES[0], "loss", "accuracy"],
        _charts(2),
    ),
    Page(
        "run-artifacts",
        lambda x: f"/#/experiments/{x.experiment_id}/runs/{x.first}/artifacts",
        lambda x: ["notes", "plots", "tables", "sk_model"],
        _artifacts,
    ),
    Page("metric", _metric_path, lambda x: ["loss", *NAMES], _charts(1)),
    Page("logged-models", lambda x: f"/#/experiments/{x.experiment_id}/models", lambda x: ["model", NAMES[0]]),
    Page(
        "logged-model-artifacts",
        lambda x: f"/#/experiments/{x.experiment_id}/models/{x.model_id}/artifacts",
        lambda x: ["MLmodel", "requirements.txt"],
        _model_artifacts,
    ),
    Page("traces", lambda x: f"/#/experiments/{x.experiment_id}/traces", lambda x: ["Start tracing"]),
    Page("prompts", lambda x: "/#/prompts", lambda x: ["Create your first prompt"]),
    Page("models", lambda x: "/#/models", lambda x: ["Registered Models", "Create Model", REGISTERED]),
    Page("registered-model", lambda x: f"/#/models/{REGISTERED}", lambda x: [REGISTERED, "Version 1", "champion"]),
    Page(
        "model-version",
        lambda x: f"/#/models/{REGISTERED}/versions/1",
        lambda x: [REGISTERED, "Version 1", "champion", NAMES[0]],  # the source run, by name
    ),
    # pages that change what is stored come last
    Page(
        "run-description",
        lambda x: f"/#/experiments/{x.experiment_id}/runs/{x.first}",
        lambda x: [f"Description of {NAMES[0]}"],
        _edit_description,
    ),
    Page("experiments-edit", lambda x: "/#/experiments", lambda x: [EXPERIMENT], _experiments_edit),
]


def visit(driver: webdriver.Chrome, base: str, page: Page, logged: Logged, shots: Path) -> list[str]:
    """Open one page; the problems found (empty when the page is right)."""
    driver.get("about:blank")
    network_calls(driver)  # drain the log of earlier pages
    driver.get(base + page.path(logged))
    problems = []
    try:
        expected = page.texts(logged)
        _wait(driver, f"{expected}", lambda d: all(t in _body(d) for t in expected))
        page.check(driver, logged)
        time.sleep(SETTLE_SECONDS)
    except AssertionError as exc:
        problems.append(str(exc))
    finally:
        driver.save_screenshot(str(shots / f"{page.name}.png"))
    text = _body(driver)
    problems += [f"error text on the page: {t!r}" for t in ERROR_TEXTS if t in text]
    problems += [f"toast: {t.text!r}" for t in driver.find_elements(By.CSS_SELECTOR, TOASTS) if t.text.strip()]
    for call in network_calls(driver):
        failed = call.url.startswith(base) and call.status is not None and call.status >= 400
        if failed and not any(call.url.startswith(base + p) for p in EXPECTED_ERRORS):
            problems.append(f"{call.method} {call.url[len(base) :]} answered {call.status}")
    return [f"{page.name}: {p}" for p in problems]


def test_pages(
    gateway: Gateway, browser: webdriver.Chrome, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    with official_client(gateway.url, monkeypatch) as client:
        logged = fill(gateway.url)
        shots = ARTIFACTS / request.node.callspec.params["gateway"]
        shots.mkdir(parents=True, exist_ok=True)
        problems = []
        for page in PAGES:
            problems += visit(browser, gateway.url, page, logged, shots)
        assert not problems, "\n".join(problems)
        # what the browser changed is stored
        assert client.get_run(logged.first).data.tags["mlflow.note.content"] == DESCRIPTION
        assert client.get_experiment_by_name(RENAMED).lifecycle_stage == "deleted"
        assert client.get_experiment_by_name(CREATED) is None
