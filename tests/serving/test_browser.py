"""The web chat page in headless Chromium (Debian chromium + chromium-driver, driven by Selenium)."""

from __future__ import annotations

import shutil

import pytest
from serving_helpers import stub_detector, tiny_gen  # noqa: F401 (fixtures)

from empathkit.serving.server import BackgroundServer, create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium / chromedriver not installed "
                                 "(scripts/test-setup.sh installs them)")]


@pytest.fixture
def browser(tmp_path, monkeypatch):
    pytest.importorskip("selenium")
    from selenium import webdriver

    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager download anything
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1000,800", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=opts)
    try:
        yield drv
    finally:
        drv.quit()


def test_page_streams_reply_and_shows_emotion(browser, tiny_gen, stub_detector):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    app = create_app(tiny_gen, {"model_id": "tiny"}, emotion_detector=stub_detector)
    with BackgroundServer(app) as url:
        browser.get(url + "/")
        WebDriverWait(browser, 30).until(lambda d: "model: tiny" in d.find_element(By.ID, "status").text)

        def say(text: str, n: int):
            browser.find_element(By.ID, "input").send_keys(text)
            browser.find_element(By.ID, "send").click()
            WebDriverWait(browser, 60).until(
                lambda d: len(d.find_elements(By.CSS_SELECTOR, ".msg.assistant[data-done]")) >= n)
            return browser.find_elements(By.CSS_SELECTOR, ".msg.user")[-1], \
                browser.find_elements(By.CSS_SELECTOR, ".msg.assistant")[-1]

        user, bot = say("I am so happy today, I got the job!", 1)
        assert bot.get_attribute("data-done") == "1"
        assert bot.find_element(By.CSS_SELECTOR, ".text").text.strip()
        assert int(bot.get_attribute("data-chunks")) >= 2  # arrived as several SSE deltas
        label = user.find_element(By.CSS_SELECTOR, ".emotion")
        assert label.get_attribute("data-emotion") == "joyful" and "joyful (0.91)" in label.text

        user, bot = say("I want to kill myself", 2)
        assert "safety" in bot.get_attribute("class") and "emergency services" in bot.text
        # the detector scores the whole conversation (the classifier's training convention), not the last turn alone:
        # the stub still sees the earlier "happy" turn
        seen = stub_detector.classifier.calls[-1][-1]
        assert "so happy today" in seen and "kill myself" in seen
        assert user.find_element(By.CSS_SELECTOR, ".emotion").get_attribute("data-emotion") == "joyful"
