"""pipeline/report.py: the report in real headless Chromium: opens from disk, no console errors, every image loads."""
import os
import shutil
from pathlib import Path

import pytest

from igaudit.pipeline.config import from_dict
from igaudit.pipeline.job import run_job
from tests.conftest import tiny_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

# CI installs Debian's chromium and chromium-driver (.ci/run); elsewhere a missing browser skips.
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"),
    reason="chromium / chromedriver not installed (apt-get install chromium chromium-driver)")]


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--allow-file-access-from-files", f"--user-data-dir={tmp_path / 'profile'}",
                 "--window-size=1200,2400"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_report_loads_from_disk_with_every_image(tiny_assets, tmp_path, browser):
    out = tmp_path / "out"
    run_job(from_dict(tiny_config(tiny_assets, out)))
    report = out / "report.html"
    browser.get(report.resolve().as_uri())
    browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        Promise.all([...document.images].map(i => i.complete ? 0 :
            new Promise(r => { i.onload = i.onerror = r; }))).then(done);""")
    images = browser.execute_script(
        "return [...document.images].map(i => [i.getAttribute('src').slice(0, 40), i.naturalWidth]);")
    assert len(images) >= 6           # a mean heatmap per class plus overlays
    broken = [src for src, width in images if width == 0]
    assert not broken, f"images that did not load: {broken}"
    assert any(src.startswith("overlays/") for src, _ in images)
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
    assert "igaudit report" in browser.title
    shot = out / "report.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    Path(os.environ.get("IGAUDIT_SCREENSHOT", tmp_path / "keep.png")).write_bytes(shot.read_bytes())
