"""The `unmute` command's parts that need no SLURM: its JSON schema file, SLURM's durations,
reading a job's events. (The command itself runs against real SLURM in tests/slurm/test_cli.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.jobdir import JobDir
from cli.schema import status_schema
from cli.slurm import duration_s
from orchestrator.auth import relative_to_itself

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = ROOT / "docs/unmute-status.schema.json"


def test_the_documented_schema_is_the_models_schema_and_a_valid_one() -> None:
    assert json.loads(SCHEMA.read_text()) == status_schema(), "run: python -m cli.schema > " + str(SCHEMA)
    checker = Path(sys.executable).parent / "check-jsonschema"
    command = [checker, "--check-metaschema", SCHEMA]
    checked = subprocess.run(command, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("04:00:00", 14400),
        ("1-00:00:00", 86400),
        ("2-03", (2 * 24 + 3) * 3600),
        ("30", 1800),
        ("5:07", 307),
        ("UNLIMITED", None),
        ("INVALID", None),
        ("", None),
    ],
)
def test_slurm_durations(text: str, seconds: int | None) -> None:
    assert duration_s(text) == seconds


def write_events(job: Path, writer: str, *lines: str) -> None:
    (job / "events").mkdir(parents=True, exist_ok=True)
    (job / "events" / writer).write_text("".join(line.replace(" ", "\t", 4) + "\n" for line in lines))


def test_a_two_node_jobs_instances_from_each_writers_events(tmp_path: Path) -> None:
    write_events(tmp_path, "job", "100 n1 serving - http://n1:3004/")
    write_events(tmp_path, "node-n1", "10 n1 starting stt port 1", "20 n1 ready stt after 10s")
    write_events(
        tmp_path,
        "node-n2",
        "11 n2 starting stt port 1",
        "21 n2 ready stt after 10s",
        "200 n2 failed stt stt on n2 stopped",
        "200 n2 error - stt on n2 stopped",
        "201 n2 stopped - exit status 1",
    )
    write_events(tmp_path, "orchestrator-n1", "30 n1 starting orchestrator p", "40 n1 ready orchestrator x")
    job = JobDir(tmp_path)
    states = {(s.node, s.instance): s.state for s in job.instances()}
    assert states == {("n1", "stt"): "ready", ("n2", "stt"): "failed", ("n1", "orchestrator"): "ready"}
    assert job.serving_url() == "http://n1:3004/"
    assert job.last("error", "job") is None  # a node's failure is not the job's
    assert job.last("error").text == "stt on n2 stopped"


def test_malformed_event_lines_are_left_out(tmp_path: Path) -> None:
    write_events(tmp_path, "job", "100 n1 serving - http://n1:3004/", "not an event", "x n1 ready stt y")
    assert [e.kind for e in JobDir(tmp_path).events()] == ["serving"]


@pytest.mark.parametrize(("path", "relative"), [("/", "./"), ("/ui", "./ui"), ("/a/b:c", "./b:c")])
def test_the_token_redirect_is_relative_to_the_page(path: str, relative: str) -> None:
    assert relative_to_itself(path) == relative
