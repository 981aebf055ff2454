"""Every figure README.md and docs/ quote from a committed report is that report's
(``train.docfigures``): a new report either rewrites them (``python -m train.docfigures``) or
fails here. The checker itself is tested on made-up reports, wrong figures included."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from client import __main__ as client_cli
from loadtest import traffic
from train import docfigures
from train.docfigures import Reports, render

REPO = Path(__file__).resolve().parent.parent


def test_every_tied_figure_and_table_is_its_reports():
    problems = docfigures.check(REPO)
    assert not problems, (
        "figures that differ from their reports (`.venv/bin/python -m train.docfigures` rewrites "
        "them from reports/):\n" + "\n".join(map(str, problems))
    )


def test_the_pages_that_quote_reports_tie_their_figures():
    # Each of these pages quotes reports; a page that lost its marks would check nothing.
    for name in ("README.md", *(f"docs/{p}.md" for p in ("evaluation", "loadtesting", "scale"))):
        text = (REPO / name).read_text()
        assert "<!-- figure: " in text and "<!-- begin: " in text, name
    for name in ("operations", "reliability-security", "web"):
        assert "<!-- figure: " in (REPO / f"docs/{name}.md").read_text(), name


# --------------------------------------------------------------------------- the checker


@pytest.fixture
def reports(tmp_path: Path) -> Reports:
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "run.json").write_text(
        json.dumps(
            {
                "recall": {"mean": 0.32674, "std": 0.0023},
                "seeds": [{"fit": 320.8}, {"fit": 180.4}, {"fit": 160.3}],
                "rmse": {"1.0": 0.96311},
                "weights": [2.0, 0.5],
                "load": "0.68 / 1.88 / 3.26",
            }
        )
    )
    (folder / "bench.md").write_text(
        "# bench\n\n"
        "| server | req/s | CPU µs: frontend / workers |\n|---|---|---|\n"
        "| echo (floor) | 2096 | 205 / 135 |\n| **ours** | 1,675 | 269 / 224 |\n\n"
        "ours / echo req/s, round by round: 0.85x, 0.74x\n"
    )
    return Reports(folder)


def page(tmp_path: Path) -> Path:
    return tmp_path / "docs" / "page.md"


def problems_of(text: str, reports: Reports, tmp_path: Path) -> list[str]:
    return [p.message for p in render(text, page(tmp_path), reports)[1]]


def test_a_right_figure_passes_and_a_wrong_one_fails(reports, tmp_path):
    right = "Recall@10 **0.3267**<!-- figure: run.json {recall.mean} --> at best."
    assert problems_of(right, reports, tmp_path) == []
    wrong = right.replace("0.3267", "0.3268")
    assert problems_of(wrong, reports, tmp_path) == [
        "0.3268 should be 0.3267 (run.json: {recall.mean})"
    ]
    # Rendering writes the report's figure back, with the page's precision and its bold.
    assert render(wrong, page(tmp_path), reports)[0] == right
    coarse = "about 0.33<!-- figure: run.json {recall.mean} -->"
    assert problems_of(coarse, reports, tmp_path) == []


def test_expressions_lists_and_formats(reports, tmp_path):
    text = (
        "fits of 321<!-- figure: run.json {seeds.0.fit} --> s, "
        "160<!-- figure: run.json min({seeds.*.fit}) -->-321<!-- figure: run.json "
        "max({seeds.*.fit}) --> s (1,321<!-- figure: run.json max({seeds.*.fit}) + 1000 --> "
        "with a second); 14.2<!-- figure: run.json {recall.mean} / {recall.std} / 10 -->x; "
        "RMSE 0.9631<!-- figure: run.json {rmse.1.0} -->; weights 2<!-- figure: run.json "
        "{weights.0} :g --> and 0.5<!-- figure: run.json {weights.1} :g -->; load "
        "1.88<!-- figure: run.json {load #1} -->"
    )
    assert problems_of(text, reports, tmp_path) == []
    # A range's dash is not a minus sign: "160-321" reads 321, not -321.
    assert problems_of(text.replace("-321<", "-320<"), reports, tmp_path) == [
        "320 should be 321 (run.json: max({seeds.*.fit}))"
    ]


def test_markdown_reports_are_read_by_table_cell_and_by_words(reports, tmp_path):
    text = (
        "echo 2,096<!-- figure: bench.md {server > echo (floor) > req/s} --> req/s, ours "
        "1,675<!-- figure: bench.md {server > ours > req/s} -->, the first row's worker "
        "135<!-- figure: bench.md {server > #0 > CPU µs: frontend / workers #1} --> µs; "
        "ours adds 89<!-- figure: bench.md {server > ours > CPU µs: frontend / workers #1} - "
        "{server > echo (floor) > CPU µs: frontend / workers #1} --> µs; rounds "
        '85<!-- figure: bench.md {"round by round:" 0} * 100 -->% and '
        '74<!-- figure: bench.md {"round by round:" 1} * 100 -->%; the best '
        "2,096<!-- figure: bench.md max({server > * > req/s}) -->; from JSON "
        "0.3267<!-- figure: bench.md {run.json:recall.mean} -->"
    )
    assert problems_of(text, reports, tmp_path) == []


@pytest.mark.parametrize(
    ("mark", "says"),
    [
        ("1<!-- figure: none.json {a} -->", "no report none.json"),
        ("1<!-- figure: run.json {recall.median} -->", "no key 'median'"),
        ("1<!-- figure: run.json {seeds.*.fit} -->", "is a list"),
        ("1<!-- figure: run.json __import__('os') -->", "is not allowed"),
        ("1<!-- figure: bench.md {server > naive > req/s} -->", "no row 'naive'"),
        ('1<!-- figure: bench.md {"never said" 0} -->', "never says"),
        ("none<!-- figure: run.json {recall.mean} -->", "no number just before"),
    ],
)
def test_a_mark_that_cannot_be_read_is_a_problem(reports, tmp_path, mark, says):
    found = problems_of(mark, reports, tmp_path)
    assert len(found) == 1 and says in found[0], found


def test_a_generated_table_is_its_reports(reports, tmp_path):
    text = "Before.\n\n<!-- begin: copy bench.md server -->\n<!-- end: copy -->\n\nAfter.\n"
    assert problems_of(text, reports, tmp_path) == [
        "table copy bench.md server is not what its report says"
    ]
    made = render(text, page(tmp_path), reports)[0]
    assert "| echo (floor) | 2096 | 205 / 135 |\n| **ours** | 1,675 | 269 / 224 |\n<!-- end" in made
    assert problems_of(made, reports, tmp_path) == []
    edited = made.replace("| 2096 |", "| 2097 |")
    assert problems_of(edited, reports, tmp_path) == [
        "table copy bench.md server is not what its report says"
    ]
    unknown = made.replace(": copy", ": nothing")
    assert problems_of(unknown, reports, tmp_path)[0].startswith("no renderer 'nothing'")


def test_the_evaluation_tables_render_from_the_committed_reports():
    reports = Reports(REPO / "reports")
    readme = REPO / "README.md"
    ranking = docfigures.ranking_table(readme, reports, "ml-1m.json")
    assert ranking[2].startswith("| **movierec** (ranking model) | **0.3267 ± 0.0023** |")
    rating = docfigures.rating_table(REPO / "docs" / "x.md", reports, "ml-100k.json")
    assert rating[2].endswith(
        "| **0.8913 ± 0.0003** | [reports/ml-100k.md](../reports/ml-100k.md) |"
    )


# --------------------------------------------------------------------------- other figures


def test_the_command_line_example_prints_the_http_examples_answer():
    """docs/api.md's `client new-user` table is the client's rendering of the answer its curl
    example shows for the same request: one model, one answer."""
    text = (REPO / "docs" / "api.md").read_text()
    curl = re.search(
        r"-d '(\{\"ratings\": \{\"50\": 5, [^']*\"movie_ids\": \[96\]\})'\n((?:# .*\n)+)", text
    )
    assert curl, "the new-user curl example with movie_ids"
    body = json.loads(curl.group(1).replace("\n", " "))
    shown = "".join(line[2:] for line in curl.group(2).splitlines())
    answer = json.loads(
        shown.replace(",...}", ', "model": {"name": "movierec", "version": "0.1.0"}}')
    )
    console = re.search(
        r"```console\n\$ (\.venv/bin/python -m client new-user [^\n]*)\n(.*?)```", text, re.S
    )
    assert console
    args = client_cli.parse_args(console.group(1).split()[3:])
    assert {str(m): r for m, r in args.ratings} == {k: float(v) for k, v in body["ratings"].items()}
    assert (args.k, args.predict) == (body["k"], body["movie_ids"])

    class Answering:
        def new_user(self, *args, **kwargs) -> dict:
            return answer

    assert client_cli._new_user(Answering(), args) == console.group(2).rstrip("\n")


def test_the_load_test_mix_is_the_code_s():
    text = (REPO / "docs" / "loadtesting.md").read_text()
    for endpoint in traffic.ENDPOINTS:
        assert f"`{endpoint.__name__}` {endpoint.share}" in text, endpoint.__name__
