"""The studio in a real headless Chromium (selenium + chromium-driver) against the real pipeline.

Screenshots go to out/screenshots/ (git-ignored): look at them. The generate test uses the first
installed identity, else the tiny test identity (tests/conftest.py: installed_identity).
"""

from __future__ import annotations

import shutil
import tempfile
import time

import pytest

from tests.conftest import REPO

SHOTS = REPO / "out" / "screenshots"
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1700"]


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (requirements-dev)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_exe = shutil.which("chromedriver")
    if not chromium or not driver_exe:
        pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="emotalk-chrome-")
    for flag in CHROME_FLAGS + [f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    drv = webdriver.Chrome(options=opts, service=webdriver.ChromeService(driver_exe))
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _wait(pred, timeout: float, what: str):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        got = pred()
        if got:
            return got
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _sliders(drv) -> list[float]:
    from selenium.webdriver.common.by import By

    return [float(drv.find_element(By.CSS_SELECTOR, f"#{n} input[type=number]").get_attribute("value"))
            for n in ("valence", "arousal")]


def _readout(drv) -> str:
    from selenium.webdriver.common.by import By

    return drv.find_element(By.CSS_SELECTOR, "#va_pad .va-readout").text


def _error_toasts(drv) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in drv.find_elements(By.CSS_SELECTOR, "[data-testid='toast-body'].error")]


@pytest.mark.slow
def test_pad_sliders_and_presets_stay_in_sync(app_url, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(app_url)
    pad = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#va_pad .va-pad"), 30, "the emotion pad")[0]
    browser.find_element(By.ID, "preset_happy").click()  # preset -> sliders and pad
    _wait(lambda: _sliders(browser) == [0.8, 0.5], 5, "sliders at the happy preset")
    assert _readout(browser) == "valence 0.80 · arousal 0.50"
    w, h = pad.size["width"], pad.size["height"]  # click a quarter left and down of the centre: (-0.5, -0.5)
    ActionChains(browser).move_to_element_with_offset(pad, -w // 4, h // 4).click().perform()
    _wait(lambda: all(abs(x + 0.5) < 0.03 for x in _sliders(browser)), 5, "sliders following the pad")
    box = browser.find_element(By.CSS_SELECTOR, "#valence input[type=number]")  # slider -> pad
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("0.3", Keys.ENTER)
    _wait(lambda: _readout(browser).startswith("valence 0.30"), 5, "the pad following the slider")
    dot = browser.find_element(By.CSS_SELECTOR, "#va_pad .va-dot").get_attribute("style")
    assert "left: 65%" in dot
    # drag from the centre to the right edge: the sliders end where the pointer stops (on the disc rim)
    pad = browser.find_element(By.CSS_SELECTOR, "#va_pad .va-pad")
    (ActionChains(browser).move_to_element(pad).click_and_hold()
     .move_by_offset(w // 8, 0).move_by_offset(w // 8, 0).move_by_offset(w // 4, -h // 2).release().perform())
    _wait(lambda: abs(_sliders(browser)[0] - 0.71) < 0.03 and abs(_sliders(browser)[1] - 0.71) < 0.03, 5,
          "sliders at the end of the drag, clamped to the unit disc")
    pad.send_keys(Keys.ARROW_DOWN)  # arrow keys nudge by 0.05
    _wait(lambda: abs(_sliders(browser)[1] - 0.66) < 0.03, 5, "arousal nudged down by the arrow key")
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "emotion_controls.png"))


@pytest.mark.slow
def test_type_text_pick_emotion_generate_and_watch_the_video(app_url, browser):
    from selenium.webdriver.common.by import By

    browser.get(app_url)
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#va_pad .va-pad"), 30, "the app")
    browser.find_element(By.XPATH, "//button[@role='tab' and normalize-space()='Text']").click()
    box = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#text_in textarea"), 5, "the text box")[0]
    box.send_keys("Hello there, friend.")
    browser.find_element(By.ID, "speak").click()  # hear it first; Generate then renders this very wav
    note = _wait(lambda: "Spoken by" in browser.find_element(By.ID, "tts_note").text
                 and browser.find_element(By.ID, "tts_note").text, 30, "the spoken text")
    assert "piper" in note or "espeak" in note or "edge" in note
    browser.find_element(By.ID, "preset_happy").click()
    _wait(lambda: _sliders(browser) == [0.8, 0.5], 5, "sliders at the happy preset")
    browser.find_element(By.XPATH, "//button[contains(., 'Advanced')]").click()  # 128 px: quick on a CPU
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#size input"), 5, "the resolution menu")[0].click()
    _wait(lambda: [o for o in browser.find_elements(By.CSS_SELECTOR, "li.item")
                   if o.text.strip().endswith("128 px")], 5, "the 128 px option")[0].click()
    browser.find_element(By.ID, "generate").click()
    src = _wait(lambda: [v.get_attribute("src") for v in
                         browser.find_elements(By.CSS_SELECTOR, "#result_video video")
                         if v.get_attribute("src")] or _error_toasts(browser), 55, "the video")
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "generate.png"))
    assert not _error_toasts(browser), _error_toasts(browser)
    assert src[0].endswith(".mp4"), src
    result = browser.find_element(By.ID, "result_notes").text
    assert "Voice:" in result and "frames" in result, result
    size = browser.execute_script("const v = document.querySelector('#result_video video');"
                                  "return [v.videoWidth, v.videoHeight, v.duration];")
    assert size[:2] == [128, 128] and 0.5 < size[2] < 5, size  # the picked size; about 1.5 s of speech
