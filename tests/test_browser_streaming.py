"""Streamed Generate in a real headless Chromium: the video starts playing before generation ends.

Gradio's streaming video output re-muxes each segment with ffmpeg and ffprobe from PATH; without them
the app does not offer streaming (emotalk.ui.streaming.available) and this test skips, saying so.
"""

from __future__ import annotations

import pytest

from tests.test_browser import _css, _open, _pick_size_128, _shot, _tab, _wait, app_url, browser  # noqa: F401


@pytest.mark.slow
def test_the_video_plays_while_it_is_still_being_made(app_url, browser):  # noqa: F811
    from emotalk.ui import streaming

    if not streaming.available():
        pytest.skip("Gradio streams video only with ffmpeg and ffprobe on PATH (apt-get install ffmpeg)")
    _open(browser, app_url)
    _tab(browser, "Text")
    box = _wait(lambda: _css(browser, "#text_in textarea"), 5, "the text box")[0]
    box.send_keys("Hello there, friend. This is the second sentence. And here is a third one, a bit longer.")
    _pick_size_128(browser)
    _css(browser, "#generate")[0].click()
    playing = ("const v = document.querySelector('#live_video video');"
               "return !!v && v.currentTime > 0 && !v.paused;")
    _wait(lambda: browser.execute_script(playing), 120, "the live video playing")
    still_making = not [v for v in _css(browser, "#result_video video") if v.get_attribute("src")]
    _shot(browser, "generate_streaming.png")
    assert still_making, "the video only played after the whole render was done"
    _wait(lambda: [v for v in _css(browser, "#result_video video") if v.get_attribute("src")], 300,
          "the complete mp4")
