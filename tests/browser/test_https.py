"""The UI from another machine's point of view: on this machine's network address, not
loopback. Over HTTPS (the job's self-signed certificate, trusted by its SPKI hash as a user
trusts it by fingerprint) the browser gives the page the microphone and a whole turn works;
over plain HTTP it cannot, and the page says so instead of failing silently."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import subprocess
from collections.abc import Iterator

import pytest

from devkit.processes import ServiceProcess
from orchestrator.tls import CertInfo, self_signed
from tests.browser.conftest import SCREENSHOTS
from tests.conftest import Stack, start_orchestrator
from tests.orchestrator.test_tls import serving_tls
from tests.phrase import heard_the_phrase

pytestmark = pytest.mark.lite


def network_ipv4() -> str:
    """This machine's IPv4 address on its network (not loopback); fails the test if it has none."""
    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, contextlib.suppress(OSError):
        # A UDP connect sends nothing: it only picks the address the default route leaves from.
        udp.connect(("198.51.100.1", 9))
        found.append(udp.getsockname()[0])
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        listed = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10, check=False)
        found += listed.stdout.split()
    for address in found:
        ip = ipaddress.ip_address(address)
        if ip.version == 4 and not ip.is_loopback and not ip.is_unspecified:
            return address
    pytest.fail(f"this machine has no non-loopback IPv4 address to test from (found {found})")


@pytest.fixture(scope="module")
def address() -> str:
    return network_ipv4()


@pytest.fixture(scope="module")
def certificate(address: str, tmp_path_factory: pytest.TempPathFactory) -> CertInfo:
    return self_signed(tmp_path_factory.mktemp("tls"), [address])


@pytest.fixture(scope="module")
def https_port(
    lite_stack: Stack, certificate: CertInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    """An orchestrator on every address, serving HTTPS with the certificate; its port."""
    with serving_tls(lite_stack, certificate, tmp_path_factory.mktemp("https"), "--host", "0.0.0.0") as port:
        yield port


@pytest.fixture(scope="module")
def plain_http(lite_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """An orchestrator on every address, serving plain HTTP."""
    backends = lite_stack.stt, lite_stack.tts, lite_stack.llm
    workdir = tmp_path_factory.mktemp("http")
    with start_orchestrator(*backends, lite_stack.token, workdir, ORCHESTRATOR_HOST="0.0.0.0") as orch:
        yield orch


async def test_a_whole_turn_over_https_on_the_network_address(
    lite_stack: Stack, browser_page, address: str, certificate: CertInfo, https_port: int
) -> None:
    lite_stack.script(reply="Secure and sound, the weather is fine.")
    # This one certificate is trusted by its key's hash (as a user trusts it by its
    # fingerprint), not by ignoring every certificate error.
    trust = f"--ignore-certificate-errors-spki-list={certificate.spki_sha256}"
    page = await browser_page(chromium_args=(trust,))
    await page.goto(f"https://{address}:{https_port}/?token={lite_stack.token}")
    assert page.url == f"https://{address}:{https_port}/"
    assert await page.evaluate("window.isSecureContext")
    await page.wait_for_selector("#status li.ready[data-service=llm]")
    assert await page.locator("#insecure").is_hidden()
    await page.click("#talk")
    await page.wait_for_selector(".turn.assistant:not(.pending)", timeout=60_000)
    # The phrase went through Chromium's capture, wss and the STT.
    assert heard_the_phrase(await page.inner_text(".turn.user"))
    assert "Secure and sound" in await page.inner_text(".turn.assistant")
    # The reply's audio came back over wss and plays.
    await page.wait_for_function("Math.max(0, ...window.unmutePlayed.values()) > 0", timeout=10_000)
    assert (await page.evaluate("window.unmuteLatencies"))[0]["ms"] > 0
    await page.screenshot(path=SCREENSHOTS / "7-https-network.png")


async def test_plain_http_on_the_network_address_says_the_microphone_needs_https(
    lite_stack: Stack, browser_page, address: str, plain_http: ServiceProcess
) -> None:
    page = await browser_page()
    await page.goto(f"http://{address}:{plain_http.port}/?token={lite_stack.token}")
    assert not await page.evaluate("window.isSecureContext")
    banner = page.locator("#insecure")
    await banner.wait_for(state="visible")
    text = await banner.inner_text()
    assert "The microphone needs HTTPS or a tunnel" in text
    assert f"http://localhost:{plain_http.port}/" in text
    await page.screenshot(path=SCREENSHOTS / "8-http-needs-https.png")
    await page.click("#talk")
    error = page.locator("#error")
    await error.wait_for(state="visible")
    assert "Cannot start" in await error.inner_text()
    assert await page.inner_text("#state") == "no microphone"
    assert await page.inner_text("#talk") == "Start"  # nothing started behind the message
    await page.screenshot(path=SCREENSHOTS / "9-http-talk-pressed.png")
