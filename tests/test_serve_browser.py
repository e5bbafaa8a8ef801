"""End to end in a real browser: Debian's headless Chromium driven by Playwright against `vidgpt serve`
(started here on a free localhost port with the tiny random pipeline).

Type a prompt, see the blueprint preview and then a playing <video>, edit the clip by instruction and
by an inpaint box drawn on it, download it, upload a video, and see an error in the chat (not an alert). A
screenshot is saved under the test's tmp dir (its path is printed). Skips only when Chromium
cannot start (or is not installed: tools/install.sh installs Debian's `chromium`).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")

CHROMIUM = os.environ.get("VIDGPT_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (tools/install.sh installs it with the dev extras)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: Chromium cannot start (tools/install.sh installs Debian's chromium)")
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
    except Exception as e:  # a browser that cannot start on this machine
        pw.stop()
        pytest.skip(f"Chromium cannot start: {str(e).splitlines()[0]}")
    yield b
    b.close()
    pw.stop()


class SlowSteps:
    """Wraps the pipeline's decode backend so each token takes a little time: the preview stays up
    long enough for the browser to see it before the final clip replaces it."""

    def __init__(self, inner, delay: float):
        self.inner, self.delay = inner, delay

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def step(self, tokens):
        time.sleep(self.delay)
        return self.inner.step(tokens)


@pytest.fixture(scope="module")
def server(pipe):
    from vidgpt.serve import ServeSettings, create_app
    from vidgpt.serve.threaded import serve_in_thread

    orig = pipe.backend
    pipe.backend = SlowSteps(orig, 0.03)
    app = create_app(pipe, ServeSettings(max_prompt_chars=500), model_name="tiny random model")
    try:
        with serve_in_thread(app) as url:
            yield url, app
    finally:
        pipe.backend = orig


# records, in order, each time a blueprint preview (with its label) or a final clip card appears
SEEN = """
window.__seen = [];
const once = new WeakSet();
const note = (el, what) => { if (!once.has(el)) { once.add(el); window.__seen.push(what); } };
new MutationObserver(() => {
  for (const v of document.querySelectorAll("[data-testid=preview-video]"))
    note(v, v.closest(".turn").textContent.includes("blueprint preview") ? "preview" : "unlabelled preview");
  for (const c of document.querySelectorAll("[data-testid=clip]")) note(c, "clip");
}).observe(document, {childList: true, subtree: true, attributes: true, attributeFilter: ["data-testid"]});
"""


def _clip_playing(page, card) -> None:
    page.wait_for_function(
        "(v) => v.readyState >= 2 && !v.paused && v.currentTime > 0 && v.videoWidth > 0",
        arg=card.locator("video").element_handle(), timeout=15000,
    )


def test_page_make_preview_edit_download(browser, server, tmp_path, media_files):
    url, app = server
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    console_errors, dialogs = [], []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.add_init_script(SEEN)
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    assert "tiny random model" in page.inner_text("[data-testid=model-status]")
    # the settings panel offers only sizes the model can make
    assert page.eval_on_selector_all("#width option", "os => os.map(o => +o.value)") == [16, 32, 48, 64]
    page.select_option("[data-testid=frames]", "5")
    page.select_option("[data-testid=width]", "32")
    page.select_option("[data-testid=height]", "32")
    page.fill("[data-testid=seed]", "0")

    # 1. a prompt: the blueprint preview shows first, then the final clip plays in the page
    page.fill("[data-testid=prompt]", "make a red circle moving right")
    page.press("[data-testid=prompt]", "Enter")
    cards = page.locator("[data-testid=clip]")
    cards.first.wait_for(timeout=30000)
    # what the page showed, in order (recorded in the page, so it does not depend on polling speed)
    seen = page.evaluate("window.__seen")
    assert seen[:2] == ["preview", "clip"], seen
    assert page.locator("[data-testid=preview-video]").count() == 0  # the final clip replaced it
    first = cards.nth(0)
    _clip_playing(page, first)
    assert "5 frames · 32×32" in first.inner_text()

    # 2. an edit by instruction from the clip's own buttons
    first.locator("[data-testid=edit-text]").fill("make it blue")
    first.locator("[data-testid=edit-apply]").click()
    page.wait_for_function("document.querySelectorAll('[data-testid=clip]').length >= 2", timeout=30000)
    second = cards.nth(1)
    assert "instruct: make it blue" in second.inner_text()
    _clip_playing(page, second)

    # 3. inpaint a box drawn on the first clip
    first.locator("[data-testid=edit-inpaint]").click()
    box = first.locator("canvas").bounding_box()
    page.mouse.move(box["x"] + 4, box["y"] + 4)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=4)
    page.mouse.up()
    first.locator("[data-testid=edit-inpaint]").click()
    page.wait_for_function("document.querySelectorAll('[data-testid=clip]').length >= 3", timeout=30000)
    third = cards.nth(2)
    assert "inpaint:" in third.inner_text()
    _clip_playing(page, third)
    # the server got the box in clip pixels: the job's mask lies inside the 32x32 frame, top-left quarter
    edits = [j for j in app.state.jobs.jobs.values() if j.kind == "edit" and j.params["task"] == "inpaint"]
    x0, y0, x1, y1 = edits[-1].params["mask"]
    assert 0 <= x0 < x1 <= 17 and 0 <= y0 < y1 <= 17, edits[-1].params["mask"]

    # 4. download the first clip: a real mp4
    with page.expect_download(timeout=15000) as dl:
        first.locator("[data-testid=download]").click()
    saved = tmp_path / dl.value.suggested_filename
    dl.value.save_as(saved)
    data = saved.read_bytes()
    assert saved.suffix == ".mp4" and data[4:8] == b"ftyp" and len(data) > 500

    # 5. upload a video: it becomes a clip of the chat, with the same buttons
    page.set_input_files("[data-testid=upload]", str(media_files.clip))
    page.wait_for_function("document.querySelectorAll('[data-testid=clip]').length >= 4", timeout=30000)
    fourth = cards.nth(3)
    assert "clip.mp4 · 17 frames · 64×48" in fourth.inner_text()
    _clip_playing(page, fourth)

    # 6. a bad request is an error turn in the chat, not an alert
    page.fill("[data-testid=prompt]", "x" * 600)
    page.press("[data-testid=prompt]", "Enter")
    err = page.wait_for_selector("[data-testid=error]", timeout=15000)
    assert "600 characters" in err.inner_text()
    assert dialogs == []

    page.set_viewport_size({"width": 1100, "height": 2500})  # the whole conversation in one picture
    page.evaluate("document.getElementById('chat').scrollTop = 0")
    shot = tmp_path / "serve_page.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("VIDGPT_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["VIDGPT_SCREENSHOT_DIR"]) / shot.name)
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    # the only failed request is the refused 600-character message
    assert [m for m in console_errors if "status of 422" not in m] == [], console_errors
    assert len(console_errors) == 1
    page.close()


def test_page_says_when_there_is_no_model(browser, tmp_path):
    from vidgpt.serve import create_app
    from vidgpt.serve.threaded import serve_in_thread

    app = create_app(None, model_error="no vidgpt model here yet; make one with `vidgpt lm train`")
    with serve_in_thread(app) as url:
        page = browser.new_page()
        page.goto(url + "/")
        banner = page.wait_for_selector("[data-testid=banner]", state="visible", timeout=15000)
        assert "No model available: no vidgpt model here yet" in banner.inner_text()
        assert page.is_disabled("[data-testid=send]")
        page.close()
