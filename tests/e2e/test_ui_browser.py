"""The Airflow 3 UI in a real browser (headless Chromium from Debian, driven by Selenium):
log in, open the training DAG, open its trigger form, check that every param renders with
its title and the right kind of field, that invalid values are refused before a run
exists, trigger a quick run from the form and see it succeed, and see in the UI what each
run achieved (promoted or refused, version and test accuracy, links to the model).

Screenshots go to artifacts/screenshots/ (one per step).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
TRAINING_DAG = "fashion_mnist_training"
DEPLOYMENT_DAG = "model_deployment"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FAST_FIELDS = {"epochs": "1", "limit_train": "2000", "limit_test": "500"}
WAIT_S = 180  # generous: a loaded machine answers a sign-in in tens of seconds

selenium = pytest.importorskip("selenium", reason="selenium not installed (pip install selenium)")
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip("Chromium not installed: apt-get install chromium chromium-driver", allow_module_level=True)

from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver import Chrome, ChromeOptions  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    options = ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        "--lang=en-US",
    ):
        options.add_argument(arg)
    driver = Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def ui(browser, airflow_server):
    airflow_server.api.unpause(TRAINING_DAG)
    return UI(browser, airflow_server.base_url)


class UI:
    """The few page interactions the tests need, with waits and screenshots."""

    def __init__(self, driver, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url
        self.wait = WebDriverWait(driver, WAIT_S)

    def shot(self, name: str) -> Path:
        path = SHOTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def find(self, by: str, value: str):
        return self.wait.until(EC.presence_of_element_located((by, value)))

    def click(self, by: str, value: str):
        element = self.wait.until(EC.element_to_be_clickable((by, value)))
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        element.click()
        return element

    def text(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "body").text

    def wait_text(self, needle: str) -> None:
        try:
            self.wait.until(lambda d: needle in d.find_element(By.TAG_NAME, "body").text)
        except TimeoutException:
            self.shot("failure")
            raise AssertionError(f"{needle!r} never appeared on {self.driver.current_url}") from None

    def reveal(self, name: str) -> None:
        """Expand the form section holding param ``name``: one section is open at a time (the
        default one, "Run Parameters", when the form opens)."""
        from eksml.params import DEFAULT_SECTION, PARAM_SCHEMAS

        section = PARAM_SCHEMAS[name].get("section") or DEFAULT_SECTION
        trigger = self.find(By.XPATH, f"//button[@aria-expanded][.//*[normalize-space()='{section}']]")
        if trigger.get_attribute("aria-expanded") != "true":
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", trigger)
            trigger.click()
            self.wait.until(lambda d: trigger.get_attribute("aria-expanded") == "true")
        # The section opens with an animation: wait until the field's label can be read.
        self.wait.until(
            lambda d: any(
                e.is_displayed() and e.text.strip()
                for e in d.find_elements(
                    By.XPATH,
                    f"//*[@id='element_{name}' or @name='element_{name}']"
                    "/ancestor::*[@data-scope='field' and @data-part='root'][1]//label",
                )
            )
        )

    def field(self, name: str):
        """The form row (label, input, help text) of param ``name``."""
        self.reveal(name)
        anchor = self.find(By.CSS_SELECTOR, f"[name='element_{name}'], #element_{name}")
        return anchor.find_element(By.XPATH, "./ancestor::*[@data-scope='field' and @data-part='root'][1]")

    def settled(self, element) -> None:
        """Wait until ``element`` stays put between two polls: a section that just opened is still
        animating, and a click meanwhile lands on whatever slides under the pointer (the section's
        own header, "element click intercepted")."""
        seen: list[dict] = []

        def still(_driver) -> bool:
            seen.append(element.rect)
            return len(seen) > 1 and seen[-1] == seen[-2]

        self.wait.until(still)

    def type_number(self, name: str, value: str) -> None:
        self.reveal(name)
        box = self.find(By.NAME, f"element_{name}")
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
        self.settled(box)
        box.click()
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.BACKSPACE)
        box.send_keys(value)
        box.send_keys(Keys.TAB)

    def open_trigger_form(self):
        self.driver.get(f"{self.base_url}/dags/{TRAINING_DAG}")
        self.click(By.CSS_SELECTOR, "button[aria-label='Trigger Dag']")
        return self.find(By.CSS_SELECTOR, "[data-testid='config-form']")

    def close_dialog(self) -> None:
        """Escape closes an open dropdown first, then the dialog."""
        for _ in range(3):
            ActionChains(self.driver).send_keys(Keys.ESCAPE).perform()
            try:
                WebDriverWait(self.driver, 3).until(
                    EC.invisibility_of_element_located((By.CSS_SELECTOR, "[data-testid='config-form']"))
                )
                return
            except TimeoutException:
                continue
        raise AssertionError("the trigger dialog did not close")

    #: The trigger form's "Configuration JSON" editor (Monaco); the page behind has others.
    CONF_EDITOR = (
        "//label[normalize-space()='Configuration JSON']"
        "/following::*[@data-mode-id='json'][1]//*[contains(@class, 'view-lines')]"
    )

    def conf_editor_text(self) -> str:
        return self.find(By.XPATH, self.CONF_EDITOR).text

    def open_advanced_options(self) -> None:
        self.click(By.XPATH, "//button[.//div[normalize-space()='Advanced Options']]")
        self.find(By.XPATH, self.CONF_EDITOR)

    def replace_conf(self, text: str) -> None:
        """Replace the Configuration JSON (a Monaco editor) as if pasted."""
        self.click(By.XPATH, self.CONF_EDITOR)
        self.driver.switch_to.active_element.send_keys(Keys.CONTROL, "a")
        self.driver.switch_to.active_element.send_keys(Keys.DELETE)
        # insertText bypasses the editor's auto-closing of quotes and brackets.
        self.driver.execute_cdp_cmd("Input.insertText", {"text": text})

    def trigger_button(self):
        buttons = [
            b for b in self.driver.find_elements(By.XPATH, "//button[normalize-space()='Trigger']") if b.is_displayed()
        ]
        return buttons[-1]  # the dialog's, not the page header's


def test_login(ui, airflow_server):
    ui.driver.get(ui.base_url + "/")
    ui.find(By.NAME, "username").send_keys("admin")
    ui.find(By.NAME, "password").send_keys(airflow_server.standalone.admin_password())
    ui.shot("01-login")
    ui.click(By.XPATH, "//button[normalize-space()='Sign in']")
    ui.wait.until(lambda d: "/auth/login" not in d.current_url)
    ui.find(By.CSS_SELECTOR, "a[href*='/dags']")
    assert "/auth/login" not in ui.driver.current_url


def test_training_dag_page(ui):
    ui.driver.get(f"{ui.base_url}/dags/{TRAINING_DAG}")
    ui.wait_text("ml-platform")
    page = ui.text()
    # The grid lists the stages (task groups, collapsed), not 19 tasks in a row.
    for expected in (
        TRAINING_DAG,
        "ml-platform",
        "fashion-mnist",
        "Schedule",
        "validate_params",
        "cluster",
        "training",
        "evaluation",
        "registry",
    ):
        assert expected in page, expected
    assert "train_sagemaker_mxnet" not in page
    # The schedule cell names the asset, or (once the DAG has run) "Asset or <cron>".
    assert "fashion_mnist_training_data" in page or "Asset or 0 3 * * 1" in page
    ui.shot("02-training-dag")


def test_trigger_form_renders_every_param_with_its_type(ui):
    from eksml.params import DEFAULT_SECTION, PARAM_SCHEMAS, SECTIONS

    ui.open_trigger_form()
    for title in (DEFAULT_SECTION, *SECTIONS):
        ui.wait_text(title)
    ui.shot("03a-trigger-form-sections")
    for name, schema in PARAM_SCHEMAS.items():
        row = ui.field(name)
        ui.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
        label = row.find_element(By.CSS_SELECTOR, "label").get_attribute("textContent")
        assert label.replace("*", "").strip() == schema["title"], (name, label)
        assert schema["description"] in row.get_attribute("textContent"), (name, row.get_attribute("textContent"))
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if "enum" in schema:  # a dropdown holding the default
            assert row.find_elements(By.CSS_SELECTOR, "input[role='combobox']"), name
            assert row.find_element(By.NAME, f"element_{name}").get_attribute("value") == schema["default"]
        elif "boolean" in types:
            assert row.find_element(By.NAME, f"element_{name}").get_attribute("type") == "checkbox", name
        elif {"integer", "number"} & set(types):  # a number field carrying the bounds
            box = row.find_element(By.NAME, f"element_{name}")
            assert box.get_attribute("role") == "spinbutton", name
            if "minimum" in schema:
                assert float(box.get_attribute("aria-valuemin")) == schema["minimum"], name
            if "maximum" in schema:
                assert float(box.get_attribute("aria-valuemax")) == schema["maximum"], name
        else:
            assert row.find_element(By.NAME, f"element_{name}").get_attribute("type") == "text", name
    assert "Limits: 1 to 100. The form clamps" in ui.field("epochs").get_attribute("textContent")
    ui.shot("03-trigger-form")
    ui.driver.execute_script(
        "arguments[0].scrollIntoView({block: 'center'})",
        ui.find(By.CSS_SELECTOR, "#element_framework [role='combobox']"),
    )
    ui.click(By.CSS_SELECTOR, "#element_framework [role='combobox']")
    ui.wait_text("mxnet")
    options = ui.driver.find_elements(By.CSS_SELECTOR, "[id^='react-select'][id*='-option-']")
    assert [o.text for o in options] == list(PARAM_SCHEMAS["framework"]["enum"])
    ui.shot("04-framework-dropdown")
    options[-1].click()  # "both": the dropdown sets the param
    assert ui.find(By.NAME, "element_framework").get_attribute("value") == "both"
    ui.close_dialog()


def test_invalid_values_are_refused_before_a_run_exists(ui, airflow_server):
    api = airflow_server.api
    runs_before = {r["dag_run_id"] for r in api.runs(TRAINING_DAG)}
    ui.open_trigger_form()
    # The number field does not keep a value below the schema's minimum.
    ui.type_number("epochs", "0")
    box = ui.find(By.NAME, "element_epochs")
    ui.wait.until(lambda d: box.get_attribute("value") == "1")
    ui.open_advanced_options()
    # The editor follows the form asynchronously: wait for the clamped value (a timeout fails the test).
    ui.wait.until(lambda d: '"epochs": 1,' in ui.conf_editor_text())
    ui.shot("05-epochs-0-clamped")
    # A configuration typed as JSON with epochs 0 is refused by the API with the reason.
    ui.replace_conf('{"epochs": 0, "limit_train": 2000, "limit_test": 500}')
    ui.trigger_button().click()
    message = "Invalid input for param epochs: 0 is less than the minimum of 1"
    ui.wait_text(message)
    shown = ui.find(By.XPATH, f"//*[contains(text(), '{message}')]")
    ui.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", shown)
    ui.shot("06-epochs-0-refused")
    assert {r["dag_run_id"] for r in api.runs(TRAINING_DAG)} == runs_before
    ui.close_dialog()


def test_trigger_a_quick_run_from_the_form_and_see_it_succeed(ui, airflow_server):
    api = airflow_server.api
    runs_before = {r["dag_run_id"] for r in api.runs(TRAINING_DAG)}
    ui.open_trigger_form()
    for name, value in FAST_FIELDS.items():
        ui.type_number(name, value)
        assert ui.find(By.NAME, f"element_{name}").get_attribute("value") == value
    ui.shot("07-quick-run-form")
    ui.trigger_button().click()
    run = api.wait_for_new_run(TRAINING_DAG, runs_before, "manual", timeout=60)
    assert {k: run["conf"][k] for k in FAST_FIELDS} == {k: int(v) for k, v in FAST_FIELDS.items()}
    assert run["conf"]["framework"] == "tensorflow" and run["conf"]["trainer"] == "kubernetes"
    finished = api.wait_run(TRAINING_DAG, run["dag_run_id"], timeout=420)
    assert finished["state"] == "success", api.task_states(TRAINING_DAG, run["dag_run_id"])
    ui.driver.get(f"{ui.base_url}/dags/{TRAINING_DAG}/runs/{run['dag_run_id']}")
    ui.wait_text(run["dag_run_id"])
    deadline = time.monotonic() + WAIT_S
    while "success" not in ui.text().lower() and time.monotonic() < deadline:
        time.sleep(2)
    assert "success" in ui.text().lower()
    ui.shot("08-run-succeeded")
    versions = [m for m in airflow_server.versions().values() if m["run_id"] == run["dag_run_id"]]
    assert len(versions) == 1 and versions[0]["params"]["epochs"] == 1


def outcome_summary(api, run_id: str) -> dict:
    """What the run's outcome task recorded (its XCom ``summary``), through the REST API."""
    entry = api.get(f"/dags/{TRAINING_DAG}/dagRuns/{run_id}/taskInstances/outcome/xcomEntries/summary")
    return entry["value"]


def extra_link_buttons(ui, names: set[str]) -> dict:
    """The task page's extra-link buttons (links styled as buttons under "Extra Links"), by name,
    once all of ``names`` are displayed."""

    def shown(driver) -> dict | None:
        found = {
            a.text: a
            for a in driver.find_elements(By.XPATH, "//*[normalize-space()='Extra Links']/following::a[@href]")
            if a.text in names and a.is_displayed()
        }
        return found if set(found) == names else None

    try:
        return ui.wait.until(shown)
    except TimeoutException:
        ui.shot("failure")
        raise AssertionError(f"extra-link buttons {sorted(names)} not shown on {ui.driver.current_url}") from None


def see_outcome_in_the_ui(ui, api, run_id: str, shot: str) -> dict:
    """The run's page shows PROMOTED/REFUSED with version and accuracy; the outcome task links the model."""
    states = api.task_states(TRAINING_DAG, run_id)
    summary = outcome_summary(api, run_id)
    expected = "PROMOTED" if states["outcome"] == "success" else "REFUSED"
    assert summary["outcome"].upper() == expected, (states, summary)
    ui.driver.get(f"{ui.base_url}/dags/{TRAINING_DAG}/runs/{run_id}")
    ui.wait_text(expected)
    # The run page shows a note's first line only: it carries the outcome, the version and the accuracy.
    ui.wait_text(f"test accuracy {summary['test_accuracy']:.4f}")  # the version is a link: its own element
    ui.wait_text(summary["version"])
    ui.shot(f"{shot}-run-note")
    # ... and the version is a link there, not only in the note's editor.
    note_links = ui.driver.find_elements(By.CSS_SELECTOR, f"a[href*='/eksml/models/{summary['version']}/']")
    assert any(a.is_displayed() for a in note_links), "the note's version is not clickable on the run page"
    ui.driver.get(f"{ui.base_url}/dags/{TRAINING_DAG}/runs/{run_id}/tasks/outcome")
    # The outcome task's extra links, as the UI fetches them (REST API): they name the version.
    api_links = api.get(f"/dags/{TRAINING_DAG}/dagRuns/{run_id}/taskInstances/outcome/links")["extra_links"]
    assert set(api_links) == {"Model version", "Metrics", "Plots", "Per-class plot"}, api_links
    assert summary["version"] in api_links["Model version"], api_links
    # ... shown as buttons on the task's page (its Details tab, Airflow 3.3), each opening its link.
    ui.click(By.XPATH, "//*[self::a or self::button][normalize-space()='Details']")
    buttons = extra_link_buttons(ui, set(api_links))
    assert {name: button.get_attribute("href") for name, button in buttons.items()} == {
        name: ui.base_url + url for name, url in api_links.items()
    }
    ui.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", buttons["Model version"])
    ui.shot(f"{shot}-outcome-task")
    # The version's page (served by the project's plugin), opened by its button: its accuracy and its plots, loaded.
    buttons["Model version"].click()
    ui.wait.until(lambda d: d.current_url == ui.base_url + api_links["Model version"])
    ui.wait_text(summary["version"])
    images = ui.driver.find_elements(By.TAG_NAME, "img")
    assert images and all(ui.driver.execute_script("return arguments[0].naturalWidth", i) > 100 for i in images)
    ui.shot(f"{shot}-model-version-page")
    return summary


def test_the_run_page_says_what_the_quick_run_achieved(ui, airflow_server):
    api = airflow_server.api
    manual = [r for r in api.runs(TRAINING_DAG) if r["run_type"] == "manual" and r["state"] == "success"]
    assert manual, "the quick run of the previous test is missing"
    run_id = manual[-1]["dag_run_id"]
    summary = see_outcome_in_the_ui(ui, api, run_id, "09-quick-run")
    registered = [m for m in airflow_server.versions().values() if m["run_id"] == run_id]
    assert [m["version"] for m in registered] == [summary["version"]]


def test_a_deployment_run_says_which_version_went_live(ui, airflow_server):
    """The deployment DAG serves the champion (the quick run's version) and its run's note says
    so, through the REST API and on the run's page."""
    api = airflow_server.api
    # The champion is the last promotion of any run of the session's server (asset-triggered and
    # backfill runs of other tests included), by when its run ended.
    ended = [
        (r["end_date"], outcome_summary(api, r["dag_run_id"]))
        for r in api.runs(TRAINING_DAG)
        if r["run_type"] != "scheduled" and r["state"] == "success"
    ]
    champion = max((e for e in ended if e[1]["outcome"] == "promoted"), key=lambda e: e[0])[1]
    api.unpause(DEPLOYMENT_DAG)  # only now: every promotion of the earlier tests would have deployed
    run = api.trigger(DEPLOYMENT_DAG, {})
    finished = api.wait_run(DEPLOYMENT_DAG, run["dag_run_id"], timeout=420)
    assert finished["state"] == "success", api.task_states(DEPLOYMENT_DAG, run["dag_run_id"])
    note = api.get(f"/dags/{DEPLOYMENT_DAG}/dagRuns/{run['dag_run_id']}")["note"]
    first = f"**DEPLOYED** {champion['version']} test accuracy {champion['test_accuracy']:.4f} is live"
    assert note.splitlines()[0] == first, note
    ui.driver.get(f"{ui.base_url}/dags/{DEPLOYMENT_DAG}/runs/{run['dag_run_id']}")
    ui.wait_text(f"DEPLOYED {champion['version']} test accuracy {champion['test_accuracy']:.4f} is live")
    ui.shot("10-deployment-run-note")


def test_a_refused_candidate_is_visible_in_the_ui(ui, airflow_server):
    """A run with an unreachable promotion margin: the grid shows outcome skipped, the run page REFUSED."""
    api = airflow_server.api
    runs_before = {r["dag_run_id"] for r in api.runs(TRAINING_DAG)}
    ui.open_trigger_form()
    for name, value in {**FAST_FIELDS, "min_improvement": "0.5"}.items():
        ui.type_number(name, value)
    ui.trigger_button().click()
    run = api.wait_for_new_run(TRAINING_DAG, runs_before, "manual", timeout=60)
    assert run["conf"]["min_improvement"] == 0.5
    finished = api.wait_run(TRAINING_DAG, run["dag_run_id"], timeout=420)
    assert finished["state"] == "success", api.task_states(TRAINING_DAG, run["dag_run_id"])
    summary = see_outcome_in_the_ui(ui, api, run["dag_run_id"], "11-refused-run")
    assert summary["outcome"] == "refused" and summary["champion_version"]
    assert "REFUSED" in (finished.get("note") or api.get(f"/dags/{TRAINING_DAG}/dagRuns/{run['dag_run_id']}")["note"])
    ui.driver.get(f"{ui.base_url}/dags/{TRAINING_DAG}")
    ui.wait_text("registry")  # the groups, collapsed
    ui.wait_text("outcome")  # outside them: each run's result without expanding a group
    ui.shot("12-grid-with-outcomes")


def test_a_failed_run_says_where_and_why_on_its_page(ui, airflow_server, tmp_path):
    """A run whose data folder holds nothing fails in its first task; its page says so in the note."""
    api = airflow_server.api
    empty = tmp_path / "empty-drop"
    empty.mkdir()
    run = api.trigger(TRAINING_DAG, {"epochs": 1, "data_uri": str(empty)})
    finished = api.wait_run(TRAINING_DAG, run["dag_run_id"], timeout=300)
    assert finished["state"] == "failed"
    ui.driver.get(f"{ui.base_url}/dags/{TRAINING_DAG}/runs/{run['dag_run_id']}")
    ui.wait_text("FAILED in validate_params: no Fashion-MNIST IDX files at")
    ui.shot("13-failed-run-note")
    ui.driver.get(f"{ui.base_url}/dags/{TRAINING_DAG}")
    ui.wait_text("outcome")
    ui.shot("14-grid-with-a-failed-run")
