"""The README, docs/, the reports and the code speak to their reader about the project, not
about how its work was organised: no numbered tasks, no working sessions or rounds, no files
that live outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("model", "handler", "train", "loadtest", "client", "web", "tests")
TEXT = {".py", ".md", ".json", ".csv", ".txt", ".yaml", ".html", ".js", ".css"}
# reports/loadtest/ holds Locust's raw output of local runs (git-ignored), not prose.
SKIPPED = ("reports/loadtest/",)

# Each pattern names one way the making of the project leaks into what a reader sees. They are
# written so that none matches its own source line.
WORDS = {
    "a task's number": r"\bissue #?\d+|\bthe (?:[\w-]+ )?issue\b",
    "a working session": r"\b(?:this|another|that|project's) session\b",
    "a round of work": r"\b(?:this|the previous|previous|last|next) round\b",
    "a machine lent": r"\b(?:was|were|is|not) lent\b",
    "a file outside the repository": r"(?<![\w-])shared[/]",
}
_FOUND = re.compile("|".join(f"(?:{p})" for p in WORDS.values()), re.IGNORECASE)


def scanned() -> list[Path]:
    files = [REPO / "README.md", *(REPO / "docs").rglob("*.md")]
    files += [p for p in (REPO / "reports").rglob("*") if p.suffix in TEXT]
    for package in PACKAGES:
        files += [p for p in (REPO / package).rglob("*") if p.suffix in TEXT]
    return sorted(
        p
        for p in files
        if p.is_file()
        and "__pycache__" not in p.parts
        and not str(p.relative_to(REPO)).startswith(SKIPPED)
    )


def leaks(text: str) -> list[str]:
    return [m.group() for m in _FOUND.finditer(text)]


def test_the_words_are_the_readers():
    found = []
    for path in scanned():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            found += [f"{path.relative_to(REPO)}:{number}: {word!r}" for word in leaks(line)]
    assert not found, "\n".join(found)


def test_the_patterns_catch_what_they_name_and_spare_the_rest():
    # Written with the words split, so that this file does not hold what it looks for.
    words = {"i": "iss" + "ue", "s": "ses" + "sion", "r": "ro" + "und", "l": "le" + "nt"}
    caught = [
        t.format(**words)
        for t in (
            "the targets of {i} 5",
            "Targets ({i} 14)",
            "at the start of the {i}",
            "the rating-accuracy {i} asks",
            "measured again this {s}",
            "while another {s}'s test ran",
            "jobs of this {r}",
            "(the previous {r})",
            "no GPU machine was {l} to it",
            "see " + "shared" + "/DATA.md",
        )
    ]
    spared = [
        "start_new_session=True",
        "sessionStorage.setItem",
        "a pytest fixture of scope='session'",
        "the session's TorchServe (tests/conftest.py)",
        "users rate differently in their first session",
        "rounds alternate the three servers; round by round",
        "to issue a request",
        "a shared machine",
    ]
    assert [t for t in caught if not leaks(t)] == []
    assert [t for t in spared if leaks(t)] == []
    assert scanned()  # the files are there to be read
