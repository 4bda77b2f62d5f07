"""The web chat page in headless Chromium (Debian chromium + chromium-driver, driven by Selenium), with screenshots.

What a new user sees: the detected emotion with its probability and the classifier that produced it (or a notice
saying how to get one), replies that end with a complete sentence (a reply cut by the token budget is trimmed, and
the final event corrects what was streamed), the run and method, ECG-LoRA's gate per reply and a slider to force it,
the crisis notice styled apart, REG exemplars / ReflectDiffu intents from the metadata, and the user's
emotion-reason words marked (metadata "reasons", empathkit.annotate.highlight). Screenshots go to the
test's tmp folder, or to ``$EMPATHKIT_SCREENSHOTS`` when set (to look at them); the crisis colour and the gate bar's
fill are checked on the screenshots themselves.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
from serving_helpers import EchoGenerator, StubEmotionClassifier, stub_detector, tiny_gen  # noqa: F401 (fixtures)

from empathkit.serving.emotion import EmotionDetector
from empathkit.serving.server import BackgroundServer, ServerSettings, create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
DEMO_RUN = Path(os.environ.get("EMPATHKIT_DEMO_RUN", "runs/demo/ecg-lora"))

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium / chromedriver not installed "
                                 "(scripts/test-setup.sh installs them)")]

CRISIS_BG = (253, 236, 234)  # --crisis-bg in index.html
ACCENT = (45, 108, 223)  # --accent: the gate bar's fill


class ECGLike(EchoGenerator):
    """Reports what ECG-LoRA reports: the gate it used (the forced one, else 0.42) and its run directory."""

    name = "ecg-lora"

    def __init__(self):
        super().__init__()
        self.info = {"run_dir": "runs/demo/ecg-lora", "gate_override": None}
        self.default_settings = self.default_settings.model_copy(update={"max_new_tokens": 12})

    def chat(self, conversations, settings=None, controls=None, **kw):
        replies = super().chat(conversations, settings, controls, **kw)
        for r, c in zip(replies, controls or [None] * len(replies)):
            r.info.clear()
            r.info["gate"] = c.gate if c is not None and c.gate is not None else 0.42
        return replies


class RetrievalLike(EchoGenerator):
    """Reports what REG (exemplar ids and scores) and ReflectDiffu (intents) put in Reply.info."""

    name = "reflect-like"

    def chat(self, conversations, settings=None, controls=None, **kw):
        replies = super().chat(conversations, settings, controls, **kw)
        for r in replies:
            r.info.clear()
            r.info.update({"exemplars": ["ed-train-12:3", "ed-train-40:1"], "exemplar_scores": [0.83, 0.71],
                           "exemplar_emotions": ["sad", "lonely"], "predicted_emotion": "sad",
                           "intent_first": "questioning", "intent_twice": "consoling", "intent": "sympathizing",
                           "reflect_steps": 8})
        return replies


class ReasonsLike(EchoGenerator):
    """Reports the user's emotion-reason words as the server does (``reasons``: spans + annotator) while the server
    does not compute them itself yet (no ``ServerSettings.highlight_reasons``); otherwise a plain echo."""

    name = "reasons-like"

    def __init__(self, tagger):
        super().__init__()
        self.tagger = tagger

    def chat(self, conversations, settings=None, controls=None, **kw):
        from empathkit.annotate.highlight import reason_metadata

        replies = super().chat(conversations, settings, controls, **kw)
        if not SERVER_HIGHLIGHTS:
            for r, c in zip(replies, conversations):
                r.info["reasons"] = reason_metadata(next(m["content"] for m in reversed(c) if m["role"] == "user"),
                                                    self.tagger)
        return replies


SERVER_HIGHLIGHTS = "highlight_reasons" in ServerSettings.model_fields
MARK_BG = (255, 224, 138)  # mark.reason's background in index.html


@pytest.fixture
def written_lexicon(tmp_path_factory, monkeypatch):
    """A reason tagger on a tiny written lexicon (made-up scores, not NRC entries), also as the server's tagger."""
    from empathkit.annotate import highlight
    from empathkit.annotate.lexicon import LexiconTagger

    d = tmp_path_factory.mktemp("lex")
    (d / "int.txt").write_text("word\temotion\temotion-intensity-score\nhappy\tjoy\t0.8\nworry\tfear\t0.6\n"
                               "sad\tsadness\t0.9\n")
    (d / "emolex.txt").write_text("betray\tanger\t1\r\nbetray\tdisgust\t1\r\n")
    tagger = LexiconTagger(d / "emolex.txt", d / "int.txt")
    monkeypatch.setitem(highlight._TAGGER, "t", tagger)
    return tagger


@pytest.fixture
def shots(tmp_path):
    d = Path(os.environ.get("EMPATHKIT_SCREENSHOTS") or tmp_path / "screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def browser(tmp_path, monkeypatch):
    pytest.importorskip("selenium")
    from selenium import webdriver

    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager download anything
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1100,900", "--force-device-scale-factor=1",
                f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=opts)
    try:
        yield drv
    finally:
        drv.quit()


def by_css(drv, css):
    from selenium.webdriver.common.by import By

    return drv.find_elements(By.CSS_SELECTOR, css)


def wait(drv, cond, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(drv, timeout).until(cond)


def open_page(drv, url, model_id):
    drv.get(url + "/")
    wait(drv, lambda d: f"model: {model_id}" in by_css(d, "#status")[0].text, 30)


def say(drv, text: str, timeout: float = 60):
    """Send ``text``; returns the (user, assistant) bubbles of this turn once the reply is complete."""
    n = len(by_css(drv, ".msg.assistant"))
    by_css(drv, "#input")[0].send_keys(text)
    by_css(drv, "#send")[0].click()
    wait(drv, lambda d: len(by_css(d, ".msg.assistant[data-done]")) > n, timeout)
    return by_css(drv, ".msg.user")[-1], by_css(drv, ".msg.assistant")[-1]


def reply_text(bot) -> str:
    from selenium.webdriver.common.by import By

    return bot.find_element(By.CSS_SELECTOR, ".text").text.strip()


def image(png: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(png)).convert("RGB")


def share(img, rgb, tol=6) -> float:
    """Fraction of ``img``'s pixels within ``tol`` of colour ``rgb``."""
    px = list(img.getdata())
    return sum(all(abs(a - b) <= tol for a, b in zip(p, rgb)) for p in px) / max(1, len(px))


def test_page_shows_emotion_gate_whole_sentences_and_the_crisis_notice(browser, stub_detector, shots):
    from selenium.webdriver.common.by import By

    app = create_app(ECGLike(), {"model_id": "ecg"}, emotion_detector=stub_detector)
    with BackgroundServer(app) as url:
        open_page(browser, url, "ecg")
        run = by_css(browser, "#run")[0]
        assert run.get_attribute("data-method") == "ecg-lora" and run.get_attribute("data-run") == "ecg-lora"
        assert "method: ecg-lora" in run.text and "run: ecg-lora" in run.text
        assert by_css(browser, "#gate-control")[0].is_displayed()  # the gate slider: ECG-LoRA runs only

        # 12 tokens cut the echo mid-sentence: the page shows it trimmed to the last complete sentence
        user, bot = say(browser, "I failed my exam. I studied for weeks and weeks and it still went wrong")
        # (in the second half of this short budget only whole sentences are streamed: the cut tail never showed)
        assert bot.get_attribute("data-done") == "1" and reply_text(bot) == "you said: I failed my exam."
        assert bot.get_attribute("data-finish") == "length" and bot.get_attribute("data-trimmed") == "1"
        assert "trimmed to the last complete sentence" in bot.find_element(By.CSS_SELECTOR, ".trim").text
        label = user.find_element(By.CSS_SELECTOR, ".emotion")
        assert label.get_attribute("data-emotion") == "sad" and label.get_attribute("data-prob") == "0.87"
        assert "sad (0.87)" in label.text and "classifier 'emotion'" in label.text  # which classifier said so
        assert bot.get_attribute("data-gate") == "0.42" and "ECG-LoRA gate" in bot.text and "0.42" in bot.text
        browser.save_screenshot(str(shots / "1-reply.png"))
        bar = image(bot.find_element(By.CSS_SELECTOR, ".gate-bar").screenshot_as_png)
        assert 0.3 < share(bar, ACCENT, tol=20) < 0.55  # the bar is filled to the gate value (0.42)

        # force the gate with the slider: the next reply reports the forced value
        browser.find_element(By.ID, "gate-force").click()
        browser.execute_script("const s = document.getElementById('gate-slider'); s.value = '0.8';"
                               "s.dispatchEvent(new Event('input'));")
        assert browser.find_element(By.ID, "gate-value").text == "0.80"
        _, bot = say(browser, "Thank you.")
        assert bot.get_attribute("data-gate") == "0.80" and "(forced)" in bot.text
        assert reply_text(bot) == "you said: Thank you." and bot.get_attribute("data-finish") == "stop"
        assert bot.get_attribute("data-trimmed") is None

        _, bot = say(browser, "I want to kill myself")
        assert {"crisis", "safety"} <= set(bot.get_attribute("class").split())
        assert bot.get_attribute("role") == "alert" and "Crisis support" in bot.text
        assert "emergency services" in bot.text and bot.get_attribute("data-gate") is None
        browser.execute_script("arguments[0].scrollIntoView()", bot)
        browser.save_screenshot(str(shots / "2-crisis.png"))
        assert share(image(bot.screenshot_as_png), CRISIS_BG) > 0.4  # styled apart from ordinary replies
        assert share(image(by_css(browser, ".msg.assistant")[0].screenshot_as_png), CRISIS_BG) < 0.05


def test_page_streams_reply_and_shows_emotion(browser, tiny_gen, stub_detector):
    app = create_app(tiny_gen, {"model_id": "tiny"}, emotion_detector=stub_detector)
    with BackgroundServer(app) as url:
        open_page(browser, url, "tiny")
        assert not by_css(browser, "#gate-control")[0].is_displayed()  # no gate for the prompt method
        user, bot = say(browser, "I am so happy today, I got the job!")
        assert bot.get_attribute("data-done") == "1" and reply_text(bot)
        label = user.find_elements("css selector", ".emotion")[0]
        assert label.get_attribute("data-emotion") == "joyful" and "joyful (0.91)" in label.text
        user, bot = say(browser, "I want to kill myself")
        assert "safety" in bot.get_attribute("class") and "emergency services" in bot.text
        # the detector scores the whole conversation (the classifier's training convention), not the last turn alone:
        # the stub still sees the earlier "happy" turn
        seen = stub_detector.classifier.calls[-1][-1]
        assert "so happy today" in seen and "kill myself" in seen
        assert user.find_elements("css selector", ".emotion")[0].get_attribute("data-emotion") == "joyful"


def test_page_says_how_to_get_a_classifier_and_renders_exemplars_and_intents(browser, shots):
    from selenium.webdriver.common.by import By

    app = create_app(RetrievalLike(), {"model_id": "rl"})  # no emotion classifier
    with BackgroundServer(app) as url:
        open_page(browser, url, "rl")
        wait(browser, lambda d: d.find_element(By.ID, "notice").is_displayed(), 30)
        notice = browser.find_element(By.ID, "notice").text
        assert "No emotion classifier is trained" in notice and "make demo" in notice
        assert "empathkit classifiers train emotion" in notice
        user, bot = say(browser, "Nobody came to my birthday.")
        assert user.find_element(By.CSS_SELECTOR, ".emotion").get_attribute("data-emotion") == "none"
        assert "no emotion classifier trained" in user.text
        assert bot.get_attribute("data-exemplars") == "2"
        bot.find_element(By.CSS_SELECTOR, ".exemplars summary").click()
        items = [li.text for li in bot.find_elements(By.CSS_SELECTOR, ".exemplars li")]
        assert items == ["ed-train-12:3 (score 0.83, sad)", "ed-train-40:1 (score 0.71, lonely)"]
        intents = bot.find_element(By.CSS_SELECTOR, ".intents")
        assert "questioning → consoling → sympathizing" in intents.text
        assert intents.get_attribute("data-intent") == "sympathizing"
        more = bot.find_element(By.CSS_SELECTOR, ".method-info").text
        assert "method's emotion: sad" in more and "reflect_steps: 8" in more  # unknown keys: listed generically
        browser.save_screenshot(str(shots / "3-exemplars.png"))


def test_page_marks_the_users_emotion_reason_words(browser, written_lexicon, shots):
    from selenium.webdriver.common.by import By

    app = create_app(ReasonsLike(written_lexicon), {"model_id": "rs"})
    with BackgroundServer(app) as url:
        open_page(browser, url, "rs")
        # an emoji before a span (offsets are code points, JS strings count UTF-16 units) and markup that must stay text
        text = 'I am not happy 😢 and <b>so</b> worried & "sad" about it'
        user, bot = say(browser, text)
        span = user.find_element(By.CSS_SELECTOR, ".text")
        marks = span.find_elements(By.CSS_SELECTOR, "mark.reason")
        assert [m.text for m in marks] == ["not happy", "worried", "sad"]
        assert span.get_attribute("data-reasons") == "3" and span.get_attribute("data-annotator") == "lexicon@1"
        assert all("lexicon@1" in m.get_attribute("title") for m in marks)  # the annotator, in the tooltip
        assert browser.execute_script("return arguments[0].textContent", span) == text  # nothing lost or added
        assert not span.find_elements(By.CSS_SELECTOR, "b")  # the user's markup is shown as text, never parsed
        assert not bot.find_elements(By.CSS_SELECTOR, "mark")  # only the user's words are marked
        browser.save_screenshot(str(shots / "5-reasons.png"))
        assert share(image(marks[1].screenshot_as_png), MARK_BG, tol=12) > 0.3  # visibly marked

        user, _ = say(browser, "We went to the shop.")  # no cue: the message is shown as it is, unmarked
        span = user.find_element(By.CSS_SELECTOR, ".text")
        assert span.text == "We went to the shop." and not span.find_elements(By.CSS_SELECTOR, "mark")
        assert span.get_attribute("data-reasons") == "0"


@pytest.mark.integration
@pytest.mark.skipif(not (DEMO_RUN / "adapter").is_dir(), reason=f"no demo run at {DEMO_RUN} (run `make demo`)")
def test_the_demo_ecg_lora_run_on_the_page(browser, shots):
    """After `make demo`: the first message shows a detected emotion and a gate, and the reply ends with a complete
    sentence (the real SmolLM2 ECG-LoRA run, the classifier the demo left behind, the serve defaults)."""
    from selenium.webdriver.common.by import By

    from empathkit.cli.serve import build_generator
    from empathkit.models.trim import is_complete

    detector = EmotionDetector.load()
    if not detector.available:
        pytest.skip("no emotion classifier trained (`make demo` trains the quick one)")
    gen = build_generator("prompt", DEMO_RUN, None)
    app = create_app(gen, {"model_id": "demo", "timeout": 900}, emotion_detector=detector)  # a loaded machine: slow
    with BackgroundServer(app) as url:
        open_page(browser, url, "demo")
        user, bot = say(browser, "My dog died this morning. I keep expecting him at the door.", timeout=900)
        assert bot.get_attribute("data-done") == "1"
        browser.save_screenshot(str(shots / "4-demo-run.png"))
        text = reply_text(bot)
        assert is_complete(text) and "marked" not in bot.text  # ends with a whole sentence (trimmed if need be)
        label = user.find_element(By.CSS_SELECTOR, ".emotion")
        assert label.get_attribute("data-emotion") != "none" and label.get_attribute("data-prob")
        assert float(bot.get_attribute("data-gate")) >= 0.0 and "ECG-LoRA gate" in bot.text
