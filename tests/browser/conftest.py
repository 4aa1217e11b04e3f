"""The browser tests' Chromium (Debian's, driven by Playwright) with a WAV file as the microphone.

Screenshots of each state are written to artifacts/screenshots/ (kept by CI).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
import soundfile

from devkit.realtime_client import speech
from kit.audio import resample

SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


def require_chromium() -> str:
    """Debian's chromium; fail (as root, where `make test` installs it) or skip (elsewhere) without it."""
    chromium = shutil.which("chromium")
    if chromium is not None:
        return chromium
    problem = "Debian's chromium is not installed"
    if os.geteuid() == 0:
        pytest.fail(f"{problem}; as root `make chromium` installs it, so this is an error")
    pytest.skip(f"{problem}; not root, so `make chromium` could not install it")


def microphone(path: Path, silence_s: float) -> Path:
    """The phrase then silence, at 48 kHz (Chromium loops the file)."""
    audio = np.concatenate(
        [
            np.zeros(12000, np.float32),
            resample(speech(), 24000, 48000),
            np.zeros(int(48000 * silence_s), np.float32),
        ]
    )
    soundfile.write(path, audio, 48000, subtype="PCM_16")
    return path


# The test's own event loop: Playwright's connection belongs to the loop that started it (the
# test's, which calls open_page). Under the project's default session loop for fixtures, the
# teardown ran in another loop, closed nothing and said nothing: every browser of the suite
# went on talking to the shared stack (its microphone loops) for the rest of the CI run.
@pytest_asyncio.fixture(loop_scope="function")
async def browser_page(tmp_path):
    """Opens a page in a new Chromium whose microphone says the phrase, then `mic_silence_s` of
    silence (looped); `chromium_args` are added to the launch flags. Every browser it opened is
    closed when the test ends."""
    chromium = require_chromium()

    async def open_page(mic_silence_s: float = 6.0, chromium_args: tuple[str, ...] = ()):
        from playwright.async_api import async_playwright

        playwright = await async_playwright().start()
        mic = microphone(tmp_path / "mic.wav", mic_silence_s)
        browser = await playwright.chromium.launch(
            executable_path=chromium,
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={mic}", *chromium_args],
        )
        page = await browser.new_page(viewport={"width": 1200, "height": 800})
        opened.append((playwright, browser, page))
        return page

    opened: list = []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield open_page
    from playwright.async_api import Error as PlaywrightError

    for playwright, browser, page in opened:
        # Hang up like a user would, so the server ends the session now rather than after
        # the browser process is gone, then close the browser.
        with contextlib.suppress(PlaywrightError):
            await page.evaluate(
                "(b => b && b.textContent === 'Stop' && b.click())(document.querySelector('#talk'))"
            )
            await page.wait_for_timeout(300)
        await browser.close()
        await playwright.stop()
        assert not browser.is_connected(), "a browser of this test is still running"


@pytest.fixture(scope="session")
def portal(lite_stack, tmp_path_factory: pytest.TempPathFactory):
    """An Open OnDemand-like rnode proxy (tests/rnode_proxy.py) on this machine's network
    address, over HTTPS, in front of the lite stack's orchestrator (node "127.0.0.1")."""
    from tests.browser.test_https import network_ipv4
    from tests.rnode_proxy import rnode_proxy

    with rnode_proxy(tmp_path_factory.mktemp("portal"), network_ipv4(), {"127.0.0.1": "127.0.0.1"}) as proxy:
        yield proxy


@pytest.fixture(params=["direct", "rnode"])
def served(request, lite_stack):
    """Where the browser opens the lite stack's UI: `direct` (the orchestrator's own
    http://127.0.0.1 URL) or `rnode` (through the portal proxy, under /rnode/127.0.0.1/<port>/,
    over HTTPS with the portal's certificate trusted). Gives (page URL, Chromium flags, name)."""
    port = lite_stack.orchestrator.port
    if request.param == "direct":
        return f"{lite_stack.orchestrator.http}/", (), ""
    proxy = request.getfixturevalue("portal")
    trust = f"--ignore-certificate-errors-spki-list={proxy.cert.spki_sha256}"
    return proxy.url("127.0.0.1", port), (trust,), "-rnode"
