"""pipeline/report.py: the report in real headless Chromium. A copy of report.html alone in an empty folder
shows every picture, logs no console error and makes no network request; every section is there; the
confusion table's counts are classes.parquet's. Screenshots land under the test's tmp folder (printed) and,
when IGAUDIT_SHOTS is set, in /tmp/igaudit_report_shots/ (or the folder IGAUDIT_SHOTS names)."""
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from igaudit.pipeline.config import from_dict
from igaudit.pipeline.job import run_job
from tests.conftest import tiny_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SECTIONS = ("summary", "findings", "confusion", "classes", "clusters", "rejected", "settings")

# CI installs Debian's chromium and chromium-driver (.ci/run); elsewhere a missing browser skips.
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"),
    reason="chromium / chromedriver not installed (apt-get install chromium chromium-driver)")]


def _driver(tmp_path, javascript: bool = True):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    if not javascript:     # the page's own scripts off (the driver's still run)
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


@pytest.fixture
def browser(tmp_path):
    driver = _driver(tmp_path)
    yield driver
    driver.quit()


@pytest.fixture
def browser_without_javascript(tmp_path):
    driver = _driver(tmp_path, javascript=False)
    yield driver
    driver.quit()


def _shots_folder(tmp_path: Path) -> list[Path]:
    folders = [tmp_path / "shots"]
    if os.environ.get("IGAUDIT_SHOTS"):
        chosen = os.environ["IGAUDIT_SHOTS"]
        folders.append(Path(chosen if chosen not in ("1", "true", "yes") else "/tmp/igaudit_report_shots"))
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return folders


def _shoot(browser, element_id: str, name: str, folders: list[Path]) -> None:
    if element_id:
        browser.execute_script("document.getElementById(arguments[0]).scrollIntoView();"
                               "window.scrollBy(0, -50);", element_id)
    else:
        browser.execute_script("window.scrollTo(0, 0);")
    shot = folders[0] / f"{name}.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    for folder in folders[1:]:
        shutil.copy(shot, folder / shot.name)
    print(f"screenshot: {shot}" + "".join(f" and {f / shot.name}" for f in folders[1:]))


def _open_alone(browser, report: Path, tmp_path: Path):
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(report, alone / "report.html")       # nothing beside it: no overlays/, no masks/
    browser.get((alone / "report.html").resolve().as_uri())
    browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        Promise.all([...document.images].map(i => i.complete ? 0 :
            new Promise(r => { i.onload = i.onerror = r; }))).then(done);""")


def test_report_alone_loads_every_image_and_section(tiny_assets, tmp_path, browser):
    out = tmp_path / "out"
    run_job(from_dict(tiny_config(tiny_assets, out)))
    _open_alone(browser, out / "report.html", tmp_path)
    images = browser.execute_script(
        "return [...document.images].map(i => [i.getAttribute('src').slice(0, 30), i.naturalWidth, i.alt]);")
    assert len(images) >= 3 * 2 * 2       # per class and grouping: at least a grid and one picture pair
    broken = [src for src, width, _ in images if width == 0]
    assert not broken, f"images that did not load: {broken}"
    assert all(src.startswith("data:image/") for src, _, _ in images)
    assert all(alt for _, _, alt in images)
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
    requests = [e["message"] for e in browser.get_log("performance") if '"Network.requestWillBeSent"' in e["message"]
                and '"url":"http' in e["message"]]
    assert not requests, requests
    assert "igaudit report" in browser.title
    for section in SECTIONS + ("classes-label", "classes-predicted"):
        assert browser.execute_script("return !!document.getElementById(arguments[0]);", section), section
    assert not browser.execute_script("return !!document.getElementById('comparison');")
    # a class by its prediction shows precision (the images predicted so that are labelled so), not accuracy
    heads = "return [...document.querySelectorAll('#' + arguments[0] + ' th')].map(th => th.textContent);"
    assert "precision (labelled so)" in browser.execute_script(heads, "classes-predicted")
    assert "accuracy" not in browser.execute_script(heads, "classes-predicted")
    assert "accuracy" in browser.execute_script(heads, "classes-label")
    toc = browser.execute_script("return [...document.querySelectorAll('nav.toc a')].map(a => a.hash);")
    assert toc == [f"#{s}" for s in SECTIONS]

    # the confusion table says what classes.parquet says
    shown = browser.execute_script("""return [...document.querySelectorAll('table.confusion td[data-label]')]
        .map(td => [td.dataset.label, td.dataset.predicted, parseInt(td.textContent)]);""")
    expected = {(r["class_name"], p): n for r in pq.read_table(out / "classes.parquet").to_pylist()
                if r["group_by"] == "label" for p, n in r["predicted_counts"]}
    assert {(label, p): n for label, p, n in shown if n} == expected

    # the little sort script: a click on a heading sorts its table (without JavaScript the table stays as written)
    order = """return [...document.querySelectorAll('table.clusters tbody tr')].map(r => parseInt(r.cells[3].textContent));"""
    browser.execute_script("document.querySelectorAll('table.clusters th')[3].click();")
    assert browser.execute_script(order) == sorted(browser.execute_script(order))
    browser.execute_script("document.querySelectorAll('table.clusters th')[3].click();")
    assert browser.execute_script(order) == sorted(browser.execute_script(order), reverse=True)

    folders = _shots_folder(tmp_path)
    _shoot(browser, None, "top", folders)
    first_class = browser.execute_script("return document.querySelector('section.class-section').id;")
    _shoot(browser, first_class, "class", folders)
    _shoot(browser, "confusion", "confusion", folders)


def test_report_against_a_reference_has_a_comparison_section(tiny_assets, tmp_path, browser):
    first, second = tmp_path / "first", tmp_path / "second"
    run_job(from_dict(tiny_config(tiny_assets, first)))
    run_job(from_dict(tiny_config(tiny_assets, second, analysis={"grid": 4, "reference": str(first)})))
    _open_alone(browser, second / "report.html", tmp_path)
    for section in SECTIONS + ("comparison",):
        assert browser.execute_script("return !!document.getElementById(arguments[0]);", section), section
    headline = browser.execute_script("return document.querySelector('#comparison p.lead').textContent;")
    assert headline.startswith("no change since first")
    assert "comparisons moved" in browser.execute_script("return document.getElementById('comparison').innerText;")
    assert not [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    folders = _shots_folder(tmp_path)
    _shoot(browser, "comparison", "comparison", folders)


def test_report_works_with_javascript_off(tiny_assets, tmp_path, browser_without_javascript):
    browser = browser_without_javascript
    out = tmp_path / "out"
    run_job(from_dict(tiny_config(tiny_assets, out)))
    _open_alone(browser, out / "report.html", tmp_path)
    assert browser.execute_script("return document.querySelector('th.sortable').title;") == ""   # the page's script did not run
    widths = browser.execute_script("return [...document.images].map(i => i.naturalWidth);")
    assert widths and min(widths) > 0
    for section in SECTIONS:
        assert browser.execute_script("return !!document.getElementById(arguments[0]);", section), section
    assert browser.execute_script("return document.querySelectorAll('table.confusion td[data-label]').length;") == 9
