"""The browser UI in a real headless Chromium (Debian's), with a WAV file as the microphone,
opened directly and under a path prefix through an Open OnDemand-like proxy (`served`).

Screenshots of each state are written to artifacts/screenshots/ (kept by CI).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import SCREENSHOTS
from tests.phrase import heard_the_phrase

pytestmark = pytest.mark.lite


async def test_spoken_exchange_shows_transcripts_plays_audio_and_measures_latency(
    lite_stack, browser_page, served
):
    base, flags, suffix = served
    lite_stack.script(reply="The weather is lovely today, enjoy it.")
    page = await browser_page(chromium_args=flags)
    await page.goto(f"{base}?token={lite_stack.token}")
    await page.wait_for_selector("#status li.ready[data-service=llm]")
    # The token left the address bar for a cookie scoped to the UI's own path (the prefix).
    assert page.url == base
    (cookie,) = await page.context.cookies()
    assert cookie["path"] == (urlsplit(base).path.rstrip("/") or "/"), cookie
    await page.screenshot(path=SCREENSHOTS / f"1-ready{suffix}.png")
    await page.click("summary:text('Settings')")
    await page.check("#preemptive")  # this turn is held with preemptive replies on
    await page.click("#talk")
    await page.wait_for_selector(".turn.assistant:not(.pending)", timeout=60_000)
    # The phrase went through Chromium's capture, the worklet's resampling and the STT.
    assert heard_the_phrase(await page.inner_text(".turn.user"))
    assert "lovely" in await page.inner_text(".turn.assistant")
    first = await page.evaluate("Math.max(0, ...window.unmutePlayed.values())")
    await page.wait_for_timeout(500)
    later = await page.evaluate("Math.max(0, ...window.unmutePlayed.values())")
    assert later > first > 0 or later > 0  # the playback worklet is playing the reply
    latencies = await page.evaluate("window.unmuteLatencies")
    assert latencies and 0 < latencies[0]["ms"] < 30_000
    assert (await page.inner_text('td[data-stage="browser"]')).endswith("ms")
    # The turn was held with preemptive replies on.
    detection = await page.evaluate("window.unmuteSession.audio.input.turn_detection")
    assert detection["preemptive"] is True, detection
    await page.screenshot(path=SCREENSHOTS / f"2-conversation{suffix}.png")


async def test_barge_in_stops_playback_and_marks_the_reply(lite_stack, browser_page, served):
    base, flags, suffix = served
    long_reply = " ".join(f"Part {n} of a long answer that goes on and on." for n in range(1, 12))
    lite_stack.script(reply=long_reply, token_delay_s=0.05)
    # The phrase comes back while the reply plays.
    page = await browser_page(mic_silence_s=2.5, chromium_args=flags)
    await page.goto(f"{base}?token={lite_stack.token}")
    await page.click("#talk")
    tag = await page.wait_for_selector(".turn.assistant .tag", timeout=90_000)
    assert await tag.inner_text() == "interrupted"
    # The client reported what it played; the page strikes through the rest of the reply.
    cut = await page.wait_for_selector(".turn.assistant .unheard", timeout=10_000)
    assert (await cut.inner_text()).strip()
    item = await page.evaluate("document.querySelector('.turn.assistant').dataset.item")
    played = await page.evaluate(f"window.unmutePlayed.get('{item}') || 0")
    await page.wait_for_timeout(1000)
    # Flushed: at most a few 128-sample render quanta played after the clear.
    assert await page.evaluate(f"window.unmutePlayed.get('{item}') || 0") - played <= 24000 * 0.1
    await page.screenshot(path=SCREENSHOTS / f"3-barge-in{suffix}.png")


@pytest.mark.parametrize("token", ["wrong-token", None])
async def test_wrong_or_missing_token_shows_an_access_error(lite_stack, browser_page, served, token):
    base, flags, suffix = served
    page = await browser_page(chromium_args=flags)
    response = await page.goto(base + (f"?token={token}" if token else ""))
    assert response.status == 401
    assert "Access token required" in await page.inner_text("h1")
    await page.screenshot(path=SCREENSHOTS / f"4-access-{'wrong' if token else 'missing'}{suffix}.png")


@pytest.fixture
def fragile_stack(whisper_stt, api_key, tmp_path_factory):
    """The lite stack with a TTS the test can kill and restart."""
    import secrets

    from devkit.processes import Restartable
    from tests.conftest import Stack, start_llm, start_orchestrator

    tts = Restartable(
        ("services.tts", ["--engine", "piper", "--batch-size", "2"]), api_key, tmp_path_factory.mktemp("tts")
    )
    token = secrets.token_urlsafe(16)
    try:
        with (
            start_llm(api_key, tmp_path_factory.mktemp("llm")) as llm,
            start_orchestrator(whisper_stt, tts.proc, llm, token, tmp_path_factory.mktemp("orch")) as orch,
        ):
            yield Stack(whisper_stt, tts.proc, llm, orch, token), tts
    finally:
        tts.close()


async def test_a_killed_backend_shows_an_error_and_the_page_recovers(fragile_stack, browser_page):
    stack, tts = fragile_stack
    stack.script(reply="Short answer.")
    page = await browser_page(mic_silence_s=3.0)  # the phrase repeats: one turn every few seconds
    await page.goto(f"{stack.orchestrator.http}/?token={stack.token}")
    await page.click("#talk")
    await page.wait_for_selector(".turn.assistant:not(.pending)", timeout=60_000)
    tts.kill()
    error = await page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    assert "TTS" in await error.inner_text()
    await page.screenshot(path=SCREENSHOTS / "5-backend-down.png")
    answered = await page.locator(".turn.assistant").count()
    tts.restart()
    # Recovered: a later turn is answered again, on the same page and session.
    await page.wait_for_function(
        f"document.querySelectorAll('.turn.assistant:not(.pending)').length > {answered}", timeout=90_000
    )
    assert await page.inner_text("#talk") == "Stop"  # the session was never dropped
    await page.screenshot(path=SCREENSHOTS / "6-recovered.png")
