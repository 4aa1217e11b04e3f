"""The Open OnDemand app (ood/) as the portal runs it, less the portal itself (a Rails app
not installable here): its ERB files rendered by Ruby's erb with session and context objects
shaped like OnDemand's (tests/ood/ondemand.rb, which also writes the basic template's job
script around them), the job submitted under the host's test SLURM as OnDemand's SLURM
adapter would, the portal's rnode proxy (tests/rnode_proxy.py) in front, and Chromium through
it: the page has the microphone, a spoken turn is answered, a barge-in interrupts."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from devkit.processes import ServiceProcess, free_port
from tests.browser.conftest import SCREENSHOTS, browser_page, require_chromium  # noqa: F401
from tests.browser.test_https import network_ipv4
from tests.conftest import start_llm
from tests.rnode_proxy import rnode_proxy
from tests.slurm.jobs import ACTIVE, ROOT, processes_in, require_host_slurm

pytestmark = pytest.mark.lite

APP = ROOT / "ood"
RENDER = Path(__file__).parent / "ondemand.rb"


def require_ruby() -> str:
    ruby = shutil.which("ruby")
    if ruby is not None:
        return ruby
    if os.geteuid() == 0:
        pytest.fail("no ruby although root: tests/ood/install.sh installs it (ruby and nginx from Debian)")
    pytest.skip("no ruby here and not root (tests/ood/install.sh installs it)")


def form(**values: str) -> dict[str, str]:
    """The launch form as a user submits it, with this test cluster's resources (2 CPUs)."""
    defaults = {
        "unmute_dir": str(ROOT),
        "runtime": "host",
        "env_file": "",
        "jobs_dir": "",
        "cpus": "1",
        "memory": "1G",
        "llm": "google/gemma-3-12b-it",
        "llm_url": "",
        "gpus": "1",
        "nodes": "1",
        "bc_num_hours": "1",
        "bc_queue": "debug",
        "bc_account": "",
    }
    return {**defaults, **values}


def stage(session: Path, context: dict[str, str]) -> Path:
    """What the dashboard does when the form is submitted: the session directory, rendered."""
    context_file = session.parent / f"{session.name}-context.json"
    context_file.write_text(json.dumps(context))
    result = subprocess.run(
        [require_ruby(), str(RENDER), "stage", str(APP), str(session), str(context_file)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return session


def sbatch_args(session: Path, context: dict[str, str]) -> list[str]:
    """submit.yml as OnDemand's SLURM adapter turns it into sbatch options: the job name and
    native options as written, bc_num_hours/bc_queue/bc_account as time, partition and
    account, the session directory as working directory, output.log, no copied environment."""
    submit = yaml.safe_load((session / "submit.yml").read_text())
    assert submit["batch_connect"]["template"] == "basic"
    args = [f"--job-name={submit['script']['job_name']}", *submit["script"]["native"]]
    args += [f"--time={int(context['bc_num_hours']) * 60}", f"--partition={context['bc_queue']}"]
    if context["bc_account"]:
        args.append(f"--account={context['bc_account']}")
    return [*args, f"--chdir={session}", f"--output={session}/output.log", "--export=NONE"]


def view(connection: Path) -> str:
    command = [require_ruby(), str(RENDER), "view", str(APP), str(connection)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_templates_render_as_the_portal_renders_them(tmp_path: Path) -> None:
    gemma = stage(tmp_path / "gemma", form(gpus="2", nodes="3", bc_account="proj42"))
    before = (gemma / "before.sh").read_text()
    assert "<%" not in before and f'export UNMUTE_DIR="{ROOT}"' in before
    assert "LLM_MODEL=google/gemma-3-12b-it" in before and 'echo "LLM_URL="' in before
    assert 'find_port "${host}"' in before and "trap unmute_stop TERM" in before
    script = gemma / "script.sh"
    assert os.access(script, os.X_OK) and f'exec "{ROOT}/slurm/instances.sbatch"' in script.read_text()
    assert not list(gemma.glob("*.erb"))
    args = sbatch_args(gemma, form(gpus="2", nodes="3", bc_account="proj42"))
    for expected in ("--nodes=3", "--gres=gpu:2", "--signal=B:TERM@120", "--account=proj42", "--time=60"):
        assert expected in args, args
    echo = stage(tmp_path / "echo", form(llm="echo"))
    assert 'echo "LLM_URL=echo"' in (echo / "before.sh").read_text()
    shellcheck = Path(sys.executable).parent / "shellcheck"
    rendered = [echo / name for name in ("before.sh", "after.sh", "script.sh")]
    for command in (["bash", "-n", echo / "job_script.sh"], [shellcheck, *rendered]):
        checked = subprocess.run(command, capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    connection = tmp_path / "connection.yml"
    connection.write_text("host: node7\nport: 4242\npassword: s3cret-Token_x\n")
    page = view(connection)
    assert 'action="/rnode/node7/4242/"' in page and 'name="token" value="s3cret-Token_x"' in page
    assert "Talk" in page


@pytest.fixture
def scripted_llm(api_key: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The scripted LLM with a long reply, slowly: the microphone's phrase comes back while it
    plays (a barge-in)."""
    with start_llm(api_key, tmp_path_factory.mktemp("llm")) as server:
        long_reply = " ".join(f"Part {n} of a long answer that goes on and on." for n in range(1, 12))
        script = {"reply": long_reply, "token_delay_s": 0.05}
        httpx.post(f"{server.http}/control", json=script).raise_for_status()
        yield server


def wait_for(path: Path, timeout_s: float, output: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        log = output.read_text() if output.exists() else ""
        assert time.monotonic() < deadline, f"no {path.name} after {timeout_s} s; the job's output:\n{log}"
        time.sleep(0.5)


def submit(session: Path, context: dict[str, str]) -> str:
    """The rendered job script, submitted as the portal submits it; its job id."""
    command = ["sbatch", "--parsable", *sbatch_args(session, context), str(session / "job_script.sh")]
    submitted = subprocess.run(command, cwd=session, capture_output=True, text=True, check=False)
    assert submitted.returncode == 0, submitted.stderr
    return submitted.stdout.strip().split(";")[0]


def cancel(job_id: str, output: Path) -> None:
    """The session card's Delete: scancel, then until SLURM has ended the job."""
    subprocess.run(["scancel", job_id], check=False)
    deadline = time.monotonic() + 120
    while True:
        shown = subprocess.run(
            ["scontrol", "show", "job", job_id], capture_output=True, text=True, check=False
        ).stdout
        state = re.search(r"JobState=(\S+)", shown)
        if state is None or state.group(1) not in ACTIVE:
            return
        assert time.monotonic() < deadline, output.read_text()
        time.sleep(0.5)


async def test_a_session_through_the_portal_proxy_talks_and_barges_in(
    tmp_path: Path,
    scripted_llm: ServiceProcess,
    browser_page,  # noqa: F811
) -> None:
    require_host_slurm()
    require_chromium()
    settings = tmp_path / "site.env"
    ports = {name: free_port() for name in ("STT_PORT", "LLM_PORT", "TTS_PORT")}
    lines = {**ports, "STT_ENGINE": "whisper", "TTS_ENGINE": "piper", "LLM_MODEL": "scripted-llm"}
    lines["PYTHONPATH"] = str(ROOT)  # this checkout's services, whichever checkout the venv is of
    settings.write_text("".join(f"{key}={value}\n" for key, value in lines.items()))
    context = form(
        env_file=str(settings),
        jobs_dir=str(tmp_path / "jobs"),
        llm="url",
        llm_url=f"{scripted_llm.http}/v1",
    )
    session = stage(tmp_path / "session", context)
    job_id = submit(session, context)
    output = session / "output.log"
    job_dir = tmp_path / "jobs" / job_id
    try:
        wait_for(session / "connection.yml", 180, output)
        connection = yaml.safe_load((session / "connection.yml").read_text())
        settings_of_job = dict(line.split("=", 1) for line in (job_dir / "job.env").read_text().splitlines())
        # The port the job chose and its token, whatever before.sh found: what the portal links.
        assert str(connection["port"]) == settings_of_job["ORCHESTRATOR_PORT"]
        assert connection["password"] == settings_of_job["ACCESS_TOKEN"]
        button = view(session / "connection.yml")
        action = html.unescape(re.search(r'action="([^"]+)"', button).group(1))
        token = html.unescape(re.search(r'name="token" value="([^"]+)"', button).group(1))
        node = str(connection["host"])
        assert action == f"/rnode/{node}/{connection['port']}/"

        address = network_ipv4()
        with rnode_proxy(tmp_path / "portal", address, {node: "127.0.0.1"}) as portal:
            # The Talk button's GET, at the portal's HTTPS address (not localhost: the page is
            # a secure context because of HTTPS, as on a real portal).
            trust = f"--ignore-certificate-errors-spki-list={portal.cert.spki_sha256}"
            page = await browser_page(mic_silence_s=2.5, chromium_args=(trust,))
            link = f"https://{address}:{portal.port}{action}?token={token}"
            await page.goto(link)
            assert page.url == f"https://{address}:{portal.port}{action}"  # the token left the URL
            assert await page.evaluate("window.isSecureContext")
            await page.wait_for_selector("#status li.ready[data-service=llm]")
            await page.click("#talk")
            first = await page.wait_for_selector(".turn.assistant", timeout=60_000)
            await page.wait_for_function(
                "document.querySelector('.turn.assistant').textContent.includes('Part 1')", timeout=60_000
            )
            assert (await page.inner_text(".turn.user")).strip()  # some words were heard
            tag = await page.wait_for_selector(".turn.assistant .tag", timeout=90_000)
            assert await tag.inner_text() == "interrupted"  # the phrase came back over the reply
            assert "Part 1" in await first.inner_text()
            await page.screenshot(path=SCREENSHOTS / "10-ondemand-barge-in.png")
            (cookie,) = await page.context.cookies()
            assert cookie["path"] == action.rstrip("/"), cookie  # never sent to other sessions
    finally:
        cancel(job_id, output)
    # The portal's delete is a scancel: the job stopped every service before SLURM's kill.
    events = (job_dir / "events/job").read_text()
    assert "stopped\t-\tall services stopped" in events, output.read_text()
    assert processes_in(job_dir) == []
