"""Code, notebooks and docs are reference, not history: no text dates the project's own work.

A date, an evening, "until <date>" or an issue number of our own belongs in a commit message or a generated
file under ``benchmarks/`` (which names its command and machine), not in ``lib/``, ``notebooks/``, ``docs/`` or
the README. A date that identifies an outside source (a Colab runtime list, another project's commit or issue)
is reference and stays, on the line that names that source; generated blocks (``<!-- name:start -->`` ...
``<!-- name:end -->``) are exempt.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# what dates our own work; each pattern with what it catches, for the failure message
DATING = [
    (re.compile(r"\b20\d\d-\d\d-\d\d\b"), "a date"),
    (re.compile(r"\b(?:until|since|before|after)\s+(?:20\d\d|\d{1,2}:\d\d)"), "until/since a date or time"),
    (re.compile(r"\b(?:this|last|yesterday|tomorrow)\s+(?:morning|afternoon|evening|night)\b", re.I), "a time of day"),
    (re.compile(r"\b(?:yesterday|tonight|today's run)\b", re.I), "a day"),
    (re.compile(r"\b(?:slower|faster|fastest|slowest|busy|quiet|next|previous|same)\s+(?:day|evening|morning|"
                r"night|hour)s?\b|\bhours?\s+later\b", re.I), "a moment of the machine"),
    (re.compile(r"\b(?:at|run|runs of|the)\s+\d\d:\d\d\b|\b\d\d:\d\d\s+(?:run|table|check)"), "a run's clock time"),
    (re.compile(r"\bissues?\s+\d+\b", re.I), "an issue number"),
    (re.compile(r"\bstops?\s+\d+\b", re.I), "a session's number"),
]
# a line naming one of these is about an outside source: its dates and issue numbers are reference
OUTSIDE = re.compile(r"github\.com|googlecolab|colabtools|backend-info|pytorch/vision|torchvision|pytorch-ssd|"
                     r"ssd\.pytorch|qfgaohao|HRankPlus|Torch-Pruning|\bcommit\b|https?://|colab-gpu-\d{4}-\d\d",
                     re.I)
GENERATED = re.compile(r"<!--\s*([\w-]+):start\s*-->.*?<!--\s*\1:end\s*-->", re.S)


def checked_files():
    files = sorted((REPO / "lib").rglob("*.py")) + sorted((REPO / "notebooks").glob("*.py"))
    return files + sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]


def dating_lines(text: str):
    """(line number, line, what) for every line that dates the project's own work."""
    text = GENERATED.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for n, line in enumerate(text.splitlines(), 1):
        if OUTSIDE.search(line):
            continue
        for pattern, what in DATING:
            if pattern.search(line):
                yield n, line.strip(), what
                break


@pytest.mark.parametrize("path", checked_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_text_dates_the_projects_own_work(path):
    found = [f"{path.relative_to(REPO)}:{n}: {what}: {line[:120]}" for n, line, what in
             dating_lines(path.read_text(encoding="utf-8"))]
    assert not found, "history where reference belongs (move it to a commit message or a generated benchmark " \
                      "file):\n" + "\n".join(found)


def test_the_check_catches_what_it_should_and_spares_outside_sources():
    caught = "\n".join(["the default since 2026-12-02", "917 s twice on 2 cores until 2026-12-01",
                        "measured this morning", "15.3 min on a slower day of the dev VM", "NCHW 07:15 run",
                        "540 until issue 15's lessons", "stop 27 said"])
    assert [what for _, _, what in dating_lines(caught)] == ["a date", "a date", "a time of day",
                                                             "a moment of the machine", "a run's clock time",
                                                             "an issue number", "a session's number"]
    spared = "\n".join(["pytorch-ssd's README since commit 7a839cb, 2023-03-11",
                        "googlecolab/colabtools issues #1096, #1076", "colab/colab-gpu-2026-08.txt pins",
                        "<!-- results:start -->", "run 20261202-061432 on 2026-12-02", "<!-- results:end -->"])
    assert list(dating_lines(spared)) == []
