"""Every relative link in README.md and docs/*.md leads somewhere: to a file or folder that
exists, and, with a ``#fragment``, to a heading of that Markdown file (GitHub's anchors).

The README is a front page that sends readers into docs/, and docs/ files point at each
other and at the code; a file moved or a heading renamed must fail here, not on GitHub.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target) and ![alt](target), the target optionally in <>, an optional "title" after it.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto: ...


def prose_lines(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, with their 1-based numbers."""
    lines, fence = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)[0] * len(opening.group(1))
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        elif fence is None:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (github-slugger): its rendered text lowercased,
    every character that is not a letter, digit, underscore, hyphen or space dropped, and
    each space made a hyphen (runs are not collapsed)."""
    text = CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link's text, not its target
    text = text.replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown text; a repeated slug gets -1, -2..."""
    seen: Counter[str] = Counter()
    found = set()
    for _, line in prose_lines(text):
        match = HEADING.match(line)
        if match:
            base = slug(match.group(1))
            found.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
            seen[base] += 1
    return found


def link_targets(text: str) -> list[tuple[int, str]]:
    """Every link and image target in the prose, with its line; code spans are not links."""
    targets = []
    for number, line in prose_lines(text):
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            targets.append((number, definition.group(1)))
            continue
        prose = CODE_SPAN.sub("", line)
        targets += [(number, match.group(1)) for match in INLINE_LINK.finditer(prose)]
    return targets


def broken_links(document: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with each relative link of `document`, as `file:line: target: reason`."""
    problems = []
    for number, target in link_targets(document.read_text(encoding="utf-8")):
        if EXTERNAL.match(target):
            continue
        path_part, _, fragment = target.partition("#")
        where = f"{document.relative_to(root)}:{number}: {target}"
        destination = (document.parent / unquote(path_part)).resolve() if path_part else document
        if not destination.is_relative_to(root):
            problems.append(f"{where}: leads out of the repository")
        elif not destination.exists():
            problems.append(f"{where}: no such file")
        elif fragment:
            if destination.suffix != ".md" or destination.is_dir():
                problems.append(f"{where}: an anchor into a file that is not Markdown")
            elif unquote(fragment) not in anchors(destination.read_text(encoding="utf-8")):
                problems.append(f"{where}: no heading with that anchor")
    return problems


def test_the_documents_exist() -> None:
    assert (ROOT / "README.md").exists()
    assert len(DOCUMENTS) > 1, "docs/*.md is missing"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(document: Path) -> None:
    problems = broken_links(document)
    assert not problems, "broken links:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("On a SLURM cluster", "on-a-slurm-cluster"),
        (
            "Past one GPU: the placement plan, shared nodes, more nodes, HTTPS",
            "past-one-gpu-the-placement-plan-shared-nodes-more-nodes-https",
        ),
        ("Containers (Docker and Apptainer)", "containers-docker-and-apptainer"),
        ("`make check`: the loop for a change", "make-check-the-loop-for-a-change"),
        ("torch.compile and STT_BATCH_SIZE", "torchcompile-and-stt_batch_size"),
        ("Turn-taking — CPU demo", "turn-taking--cpu-demo"),
        ("See [the plan](slurm.md) **now**", "see-the-plan-now"),
    ],
)
def test_anchors_follow_github(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_a_broken_link_is_reported(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "here.md").write_text("# Here\n\n## Twice\n\n## Twice\n", encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(
        "\n".join(
            [
                "# Front",
                "[fine](docs/here.md) [fine](docs/here.md#twice-1) [fine](#front) [web](https://x.org/y)",
                "[gone](docs/gone.md) ![gone](docs/gone.png)",
                "[no heading](docs/here.md#elsewhere) [no heading](#nowhere)",
                "[outside](../../etc/passwd)",
                "[ref]: docs/missing.md",
                "`[a code span](docs/ignored.md)`",
                "```",
                "[inside a fence](docs/ignored.md)",
                "```",
            ]
        ),
        encoding="utf-8",
    )
    assert broken_links(readme, root=tmp_path) == [
        "README.md:3: docs/gone.md: no such file",
        "README.md:3: docs/gone.png: no such file",
        "README.md:4: docs/here.md#elsewhere: no heading with that anchor",
        "README.md:4: #nowhere: no heading with that anchor",
        "README.md:5: ../../etc/passwd: leads out of the repository",
        "README.md:6: docs/missing.md: no such file",
    ]
