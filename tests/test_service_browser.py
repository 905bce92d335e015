"""The review page in a real browser: Selenium drives Debian's headless Chromium (through
/usr/bin/chromedriver, nothing downloaded) against the real ``ctface serve``.

Log in with a token, see an identification's probe and candidates' images, accept it; the
decision is in the gallery (``decisions``) under the token's user. Leaves a screenshot,
``review-page.png``, in ``$CTFACE_TEST_ARTIFACTS`` (else the test's tmp_path), and, when
``$CTFACE_README_SCREENSHOT`` names a file, there too (how docs/review-page.png was made).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import requests
from service_server import Server, running_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 30.0
pytestmark = pytest.mark.skipif(
    not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
    reason=f"{CHROMIUM} or {CHROMEDRIVER} missing (apt-get install chromium chromium-driver)",
)


def scan(people: Path, name: str) -> Path:
    return people / name.split("_")[0] / f"{name}.nii.gz"


def post_scan(server: Server, route: str, path: Path, **fields: str) -> dict[str, Any]:
    with open(path, "rb") as fh:
        r = requests.post(f"{server.url}/v1/{route}", headers=server.headers(), data=fields,
                          files={"file": (path.name, fh)}, timeout=300)  # fmt: skip
    assert r.ok, f"{route} {path.name}: {r.status_code} {r.text}\n{server.log.read_text()}"
    out: dict[str, Any] = r.json()
    return out


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium through Debian's chromedriver (Selenium Manager never runs)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "driver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def screenshot(driver: Any, tmp_path: Path, readme: bool) -> None:
    """review-page.png into the test artifacts; the README's picture when asked for."""
    folder = Path(os.environ.get("CTFACE_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(folder / "review-page.png"))
    target = os.environ.get("CTFACE_README_SCREENSHOT")
    if readme and target:
        driver.set_window_size(1200, 900)
        driver.execute_script("window.scrollTo(0, 0)")
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(target), f"could not write {target}"


def loaded(driver: Any, images: list[Any]) -> bool:
    return bool(images) and all(
        driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i)
        for i in images
    )


def test_review_page_accept_in_browser(people: Path, tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    db = tmp_path / "gallery.sqlite"
    with running_server(db, tmp_path, "--workers", "1") as server:
        for pid in ("S0001", "S0002"):
            enrolled = post_scan(server, "enroll", scan(people, f"{pid}_01"), patient_id=pid)
            assert enrolled["patient_id"] == pid, enrolled
        found = post_scan(server, "identify", scan(people, "S0001_02"), label="ACC-0001")
        fid = int(found["finding_id"])

        driver = browser
        ok = False
        try:
            driver.get(f"{server.url}/review")
            wait_for("the login page", lambda: driver.current_url.endswith("/review/login"))
            driver.find_element(By.CSS_SELECTOR, "input#token").send_keys(server.token)
            driver.find_element(By.CSS_SELECTOR, "button#login").click()
            wait_for("the review page", lambda: driver.current_url.endswith("/review"))

            css = f'section.finding[data-id="{fid}"]'
            section = wait_for(css, lambda: driver.find_elements(By.CSS_SELECTOR, css))[0]
            driver.execute_script("arguments[0].scrollIntoView()", section)  # lazy images
            candidates = section.find_elements(By.CSS_SELECTOR, "img.candidate, .candidate img")
            probe = section.find_elements(By.CSS_SELECTOR, ".probe img")
            assert len(candidates) == 2, section.get_attribute("outerHTML")
            assert len(probe) == 1, section.get_attribute("outerHTML")
            wait_for("the candidates' and the probe's images",
                     lambda: loaded(driver, candidates + probe))  # fmt: skip

            section.find_element(By.CSS_SELECTOR, "button.accept").click()
            status = section.find_element(By.CSS_SELECTOR, ".status")
            wait_for("status 'accept'", lambda: status.text.strip() == "accept")
            ok = True
        finally:
            screenshot(driver, tmp_path, readme=ok)

        r = requests.get(f"{server.url}/v1/findings/{fid}", headers=server.headers(), timeout=30)
        assert r.ok, r.text
        assert r.json()["status"] == "accept", r.json()

    with closing(sqlite3.connect(db)) as con:
        rows = con.execute(
            "SELECT decision, user, note, at FROM decisions WHERE finding_id = ?", (fid,)
        ).fetchall()
    assert [(d, u) for d, u, _, _ in rows] == [("accept", "alice")], rows
    assert rows[0][3], "the decision has no time"
