"""The figures README.md and docs/ quote from the committed reports, tied to those reports.

    python -m train.docfigures            # rewrite every tied figure and table from reports/
    python -m train.docfigures --check    # list each one that differs from its report; exit 1

``tests/test_figures.py`` runs the check, so a new report either updates the pages (run this
module) or fails the tests. A page ties a figure to a report with an HTML comment right after
it, which GitHub does not show::

    Recall@10 0.3267<!-- figure: ml-1m.json {aggregate.ranking.movierec.recall@10.mean} -->

The comment names a file of reports/ and an expression of its values. The number just before
the comment (a few characters such as ``x``, ``%``, `` ms`` or ``**`` may sit between them) must
be the expression's value written as the page writes it: with as many decimals as it shows and
thousands commas if it has them, or in the format given at the end after `` :`` (`` :g``). An
expression is arithmetic (``+ - * /``, parentheses, numbers) on values in braces and the
functions ``min``, ``max``, ``mean``, ``sum`` and ``abs``. A value is

- ``{a.b.c}``: a path in a JSON report. A key may itself hold dots (``fold_in_rmse.1.0``), a
  list takes an index, and ``*`` takes every entry (a list, for min, max, mean and sum);
- ``{header > row > column}``: a cell of a Markdown report's table: the first table whose first
  header is ``header``, the row whose first cell (bold dropped) is ``row``, or whose first two
  cells joined by ", " are (``#n``: the n-th row from 0; ``*``: every row), and the cell under
  ``column``;
- ``{"some words" n}``: the n-th number (from 0) after the first place a Markdown report has
  those words;

read from the comment's file, or from another one named in front (``{ml-1m.md:...}``). Where a
value is text (a table cell, a JSON string), it is the first number in it, or the n-th (from 0)
with `` #n`` at the end (``{server > echo (floor) > failed #1}``).

A page can also hold a whole table made from reports, between ``<!-- begin: NAME ARGS -->`` and
``<!-- end: NAME -->`` on lines of their own: the lines between are what the renderer NAME of
:data:`RENDERERS` makes of the reports ARGS.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shlex
import statistics
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def pages(repo: Path = REPO) -> list[Path]:
    """The pages whose figures are tied: the README and docs/*.md."""
    return [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Problem:
    """A figure or table of a page that is not what its report says (or cannot be read)."""

    page: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.page.name}:{self.line}: {self.message}"


class FigureError(Exception):
    """A mark that cannot be evaluated: a missing report, path, cell or function."""


# --------------------------------------------------------------------------- reading reports

# A number as the reports and pages write them: thousands commas, a decimal part, a minus sign
# only where it cannot be a range's dash ("0.9519-0.9703") or part of a word ("p95").
NUMBER = re.compile(r"(?<![\w.])(?:(?<![^\s(|*:/])-)?(?:\d{1,3}(?:,\d{3})+(?![\d,])|\d+)(?:\.\d+)?")


def numbers(text: str) -> list[float]:
    """Every number of ``text``, in order."""
    return [float(m.group().replace(",", "")) for m in NUMBER.finditer(text)]


@dataclass
class MarkdownReport:
    """A Markdown report: its text and its tables (header cells, rows of cells)."""

    text: str
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> MarkdownReport:
        report = cls(text)
        block: list[list[str]] = []
        for line in [*text.splitlines(), ""]:
            if line.startswith("|"):
                block.append([cell.strip() for cell in line.strip().strip("|").split("|")])
            elif block:
                if len(block) >= 2 and set("".join(block[1])) <= set("-: "):
                    report.tables.append((block[0], block[2:]))
                block = []
        return report

    def table(self, header: str) -> tuple[list[str], list[list[str]]]:
        for found in self.tables:
            if _plain(found[0][0]) == header:
                return found
        raise FigureError(f"no table whose first header is {header!r}")

    def cells(self, header: str, row: str, column: str) -> list[str]:
        head, rows = self.table(header)
        columns = [_plain(h) for h in head]
        if column not in columns:
            raise FigureError(f"table {header!r} has no column {column!r}")
        j = columns.index(column)
        if re.fullmatch(r"#\d+", row):
            chosen = rows[int(row[1:]) : int(row[1:]) + 1]
        else:
            chosen = [
                r
                for r in rows
                if row == "*" or row in (_plain(r[0]), ", ".join(_plain(c) for c in r[:2]))
            ]
        if not chosen:
            raise FigureError(f"table {header!r} has no row {row!r}")
        return [r[j] for r in chosen] if row == "*" else [chosen[0][j]]

    def after(self, words: str) -> str:
        at = self.text.find(words)
        if at < 0:
            raise FigureError(f"the report never says {words!r}")
        return self.text[at + len(words) :]


def _plain(cell: str) -> str:
    return cell.replace("**", "").strip()


class Reports:
    """The files of a reports folder, each read once: JSON as data, Markdown as text and tables."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._read: dict[str, Any] = {}

    def __call__(self, name: str) -> Any:
        if name not in self._read:
            path = self.folder / name
            if not path.is_file():
                raise FigureError(f"no report {name} in {self.folder.name}/")
            text = path.read_text()
            if name.endswith(".json"):
                self._read[name] = json.loads(text)
            else:
                self._read[name] = MarkdownReport.parse(text)
        return self._read[name]


def json_path(data: Any, path: str) -> Any:
    """The value at a dotted ``path`` of ``data`` (``*``: every entry, as a list)."""

    def walk(node: Any, parts: list[str]) -> Any:
        if not parts:
            return node
        if parts[0] == "*":
            items = node.values() if isinstance(node, dict) else node
            return [walk(item, parts[1:]) for item in items]
        if isinstance(node, list):
            try:
                return walk(node[int(parts[0])], parts[1:])
            except (ValueError, IndexError):
                raise FigureError(f"{path}: no entry {parts[0]!r} in a list") from None
        if isinstance(node, dict):
            for n in range(1, len(parts) + 1):
                key = ".".join(parts[:n])
                if key in node:
                    return walk(node[key], parts[n:])
        raise FigureError(f"{path}: no key {parts[0]!r}")

    return walk(data, path.split("."))


_SOURCE = re.compile(r"^([\w./-]+\.(?:json|md)):(.*)$", re.S)
_NTH = re.compile(r"^(.*?)\s+#(\d+)$", re.S)
_WORDS = re.compile(r'^"([^"]+)"\s+(\d+)$')


def lookup(reports: Reports, source: str, reference: str) -> Any:
    """The value a brace of an expression names (see the module's docstring)."""
    reference = reference.strip()
    named = _SOURCE.match(reference)
    if named:
        source, reference = named.group(1), named.group(2).strip()
    report = reports(source)
    words = _WORDS.match(reference)
    if words:
        if not isinstance(report, MarkdownReport):
            raise FigureError(f'"words" look-ups read Markdown reports, not {source}')
        found = numbers(report.after(words.group(1)))
        n = int(words.group(2))
        if n >= len(found):
            raise FigureError(f"fewer than {n + 1} numbers after {words.group(1)!r}")
        return found[n]
    nth = _NTH.match(reference)
    index = int(nth.group(2)) if nth else 0
    reference = nth.group(1) if nth else reference
    if " > " in reference:
        if not isinstance(report, MarkdownReport):
            raise FigureError(f"table look-ups read Markdown reports, not {source}")
        parts = reference.split(" > ")
        if len(parts) != 3:
            raise FigureError(f"{reference!r}: a table look-up is 'header > row > column'")
        values: Any = report.cells(*parts)
        if parts[1] != "*":
            values = values[0]
    else:
        if isinstance(report, MarkdownReport):
            raise FigureError(f"{source} is Markdown: look up a table cell or some words")
        values = json_path(report, reference)
    return _number(values, index, reference)


def _number(value: Any, index: int, reference: str) -> Any:
    if isinstance(value, list):
        return [_number(v, index, reference) for v in value]
    if isinstance(value, bool) or value is None:
        raise FigureError(f"{reference}: {value!r} is not a number")
    if isinstance(value, int | float):
        if index:
            raise FigureError(f"{reference}: #{index} of a single number")
        return float(value)
    if isinstance(value, str):
        found = numbers(value)
        if index >= len(found):
            raise FigureError(f"{reference}: {value!r} has no number #{index}")
        return found[index]
    raise FigureError(f"{reference}: {type(value).__name__} is not a number")


# --------------------------------------------------------------------------- expressions


def _flat(args: Iterable[Any]) -> list[float]:
    out: list[float] = []
    for a in args:
        out += _flat(a) if isinstance(a, list) else [a]
    return out


FUNCTIONS: dict[str, Callable[..., float]] = {
    "min": lambda *a: min(_flat(a)),
    "max": lambda *a: max(_flat(a)),
    "mean": lambda *a: statistics.fmean(_flat(a)),
    "sum": lambda *a: sum(_flat(a)),
    "abs": abs,
}
_OPERATORS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}
_BRACES = re.compile(r"\{([^{}]*)\}")


def evaluate(expression: str, source: str, reports: Reports) -> float:
    """The value of a mark's expression, its braces read from ``source`` (or the file they
    name)."""
    values: dict[str, Any] = {}

    def name(match: re.Match) -> str:
        key = f"_v{len(values)}"
        values[key] = lookup(reports, source, match.group(1))
        return key

    code = _BRACES.sub(name, expression)
    try:
        tree = ast.parse(code.strip(), mode="eval")
    except SyntaxError:
        raise FigureError(f"cannot read the expression {expression!r}") from None

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            if isinstance(node.value, bool):
                raise FigureError(f"{node.value!r} is not a number")
            return float(node.value)
        if isinstance(node, ast.Name) and node.id in values:
            return values[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = value(node.left), value(node.right)
            if isinstance(left, list) or isinstance(right, list):
                raise FigureError("arithmetic on a list (*): take its min, max, mean or sum")
            return _OPERATORS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            inner = value(node.operand)
            return -inner if isinstance(node.op, ast.USub) else inner
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in FUNCTIONS
            and not node.keywords
        ):
            return FUNCTIONS[node.func.id](*(value(a) for a in node.args))
        raise FigureError(f"{ast.unparse(node)!r} is not allowed in an expression")

    try:
        result = value(tree.body)
    except ZeroDivisionError:
        raise FigureError(f"{expression!r} divides by zero") from None
    if isinstance(result, list):
        raise FigureError(f"{expression!r} is a list (*): take its min, max, mean or sum")
    return float(result)


# --------------------------------------------------------------------------- figures on a page

_MARK = re.compile(r"<!-- figure: (\S+) (.*?) -->")
# The figure a mark ties: the number just before it, a few characters (not digits) between.
_FIGURE = re.compile(
    r"(?P<number>(?:(?<![^\s(|*:/])-)?(?<![\w.,])(?:\d{1,3}(?:,\d{3})+(?![\d,])|\d+)(?:\.\d+)?)"
    r"(?P<tail>[^\d<>|\n]{0,6})$"
)
_SPEC = re.compile(r"^(.*?)\s+:([^\s{}]*)$", re.S)


def shown(value: float, like: str, spec: str | None = None) -> str:
    """``value`` as a page writes it: in ``spec``'s format, else with the decimals and
    thousands commas of ``like``."""
    if spec:
        return format(value, spec)
    decimals = len(like.partition(".")[2])
    return format(value, f"{',' if ',' in like else ''}.{decimals}f")


# --------------------------------------------------------------------------- generated tables


def _stat(s: dict, digits: int = 4) -> str:
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def _bold(text: str, best: bool) -> str:
    return f"**{text}**" if best else text


def _link(page: Path, report: Path) -> str:
    return os.path.relpath(report, page.parent).replace(os.sep, "/")


def _dataset_label(meta: dict) -> str:
    protocol = re.sub(r"\s*seed=\d+$", "", meta["protocol"])
    return f"{meta['dataset'].upper()}, {protocol}"


RANKING_BOLD = ("recall@10", "ndcg@10")  # the figures set in bold where best
RANKING_ROWS = {
    "movierec": "**movierec** (ranking model)",
    "EASE (rating-aware)": "EASE (rating-aware)",
    "EASE": "EASE",
    "iALS": "iALS",
    "most popular": "most popular",
    "movierec, by predicted rating": "movierec, ordered by predicted rating (`rank_by: rating`)",
}


def ranking_table(page: Path, reports: Reports, name: str) -> list[str]:
    """The top-10 table of an evaluation report (``ml-1m.json``): accuracy with its spread
    over seeds, coverage, popularity and fit time; the best Recall@10 and NDCG@10 in bold."""
    rows = reports(name)["aggregate"]["ranking"]
    best = {f: max(rows[m][f]["mean"] for m in RANKING_ROWS if m in rows) for f in RANKING_BOLD}
    lines = [
        "| ranking | Recall@10 | Recall@20 | NDCG@10 | coverage@10 | popularity percentile | "
        "fit (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, label in RANKING_ROWS.items():
        if model not in rows:
            continue
        r = rows[model]
        cells = [
            _bold(_stat(r[f]), f in best and r[f]["mean"] == best[f])
            for f in ("recall@10", "recall@20", "ndcg@10")
        ]
        seconds = r["fit_seconds"]["mean"] if "fit_seconds" in r else None
        fit = "" if seconds is None else f"{seconds:.{0 if seconds >= 10 else 1}f}"
        cells += [
            f"{r['coverage@10']['mean']:.3f}",
            f"{r['popularity_percentile@10']['mean']:.1f}",
            fit,
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


RATING_MODELS = {
    "global mean": "global mean",
    "bias baseline": "bias baseline",
    "matrix factorization": "matrix factorization",
    "movierec (fast preset)": "movierec fast",
    "movierec (full preset)": "movierec full",
}


def rating_table(page: Path, reports: Reports, *names: str) -> list[str]:
    """Test RMSE of every rating model, one row per evaluation report, the best in bold."""
    lines = [
        "| dataset, protocol | " + " | ".join(RATING_MODELS.values()) + " | report |",
        "|---|" + "---|" * (len(RATING_MODELS) + 1),
    ]
    for name in names:
        report = reports(name)
        models = report["aggregate"]["models"]
        best = min(models[m]["test_rmse"]["mean"] for m in RATING_MODELS)
        cells = [
            _bold(_stat(models[m]["test_rmse"]), models[m]["test_rmse"]["mean"] == best)
            for m in RATING_MODELS
        ]
        md = reports.folder / name.replace(".json", ".md")
        link = f"[reports/{md.name}]({_link(page, md)})"
        lines.append(f"| {_dataset_label(report['meta'])} | " + " | ".join(cells) + f" | {link} |")
    return lines


def newusers_rating_table(page: Path, reports: Reports, *names: str) -> list[str]:
    """Fold-in RMSE of new users against the bias baseline's, per dataset and number of
    ratings given: mean (min-max) over seeds, the ratio of the means and each seed's."""
    lines: list[str] = []
    for name in names:
        runs = reports(name)["runs"]
        dataset = runs[0]["dataset"].upper()
        ridges = list(runs[0]["rows"][0]["fold_in_rmse"])
        ridge = "1.0" if "1.0" in ridges else ridges[0]
        if not lines:
            lines = [
                f"| dataset, ratings given | fold-in RMSE (ridge {float(ridge):g}, as served) | "
                "bias baseline RMSE | fold-in / bias (per seed) |",
                "|---|---|---|---|",
            ]
        for j, row in enumerate(runs[0]["rows"]):
            fold = [run["rows"][j]["fold_in_rmse"][ridge] for run in runs]
            bias = [run["rows"][j]["bias_baseline_rmse"] for run in runs]
            users = f" ({row['test_users']} test users per seed)" if j == 0 else ""
            per_seed = ", ".join(f"{f / b:.3f}" for f, b in zip(fold, bias))
            ratio = statistics.fmean(fold) / statistics.fmean(bias)
            lines.append(
                f"| {dataset}{users}, {row['given']} | **{statistics.fmean(fold):.4f}** "
                f"({min(fold):.4f}-{max(fold):.4f}) | {statistics.fmean(bias):.4f} "
                f"({min(bias):.4f}-{max(bias):.4f}) | **{ratio:.3f}x** ({per_seed}) |"
            )
    return lines


NEWUSER_MODELS = {
    "movierec": "movierec Recall@10 / NDCG@10",
    "EASE": "EASE",
    "EASE (rating-aware)": "rating-aware EASE",
    "iALS": "iALS",
    "most popular": "most popular",
}


def newusers_ranking_table(page: Path, reports: Reports, name: str) -> list[str]:
    """Recall@10 / NDCG@10 of new users' lists, per number of ratings given, the best in
    bold."""
    settings = reports(name)["ranking"]["aggregate"]
    lines = [
        "| given | " + " | ".join(NEWUSER_MODELS.values()) + " |",
        "|---|" + "---|" * len(NEWUSER_MODELS),
    ]
    for setting, tables in settings.items():
        rows = tables["ranking"]
        cells = []
        for model in NEWUSER_MODELS:
            pair = []
            for f in RANKING_BOLD:
                mean = rows[model][f]["mean"]
                top = max(rows[m][f]["mean"] for m in NEWUSER_MODELS)
                pair.append(_bold(f"{mean:.4f}", mean == top))
            cells.append(" / ".join(pair))
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    return lines


def copied_table(page: Path, reports: Reports, name: str, header: str) -> list[str]:
    """A table of a Markdown report as it is, found by its first header."""
    report = reports(name)
    if not isinstance(report, MarkdownReport):
        raise FigureError(f"copy reads a Markdown report, not {name}")
    head, rows = report.table(header)
    return [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


RENDERERS: dict[str, Callable[..., list[str]]] = {
    "ranking": ranking_table,
    "rating": rating_table,
    "newusers-rating": newusers_rating_table,
    "newusers-ranking": newusers_ranking_table,
    "copy": copied_table,
}
_BLOCK = re.compile(r"^<!-- begin: (\S+)(.*?) -->\n(.*?)^<!-- end: (\S+) -->$", re.S | re.M)


# --------------------------------------------------------------------------- a page, whole


def render(text: str, page: Path, reports: Reports) -> tuple[str, list[Problem]]:
    """``text`` with every tied figure and generated table made from the reports, and what
    was wrong or could not be made (left as it was)."""
    problems: list[Problem] = []

    def line_of(offset: int) -> int:
        return text.count("\n", 0, offset) + 1

    def block(match: re.Match) -> str:
        name, args, old, end = match.group(1), match.group(2), match.group(3), match.group(4)
        at = line_of(match.start())
        if end != name:
            problems.append(Problem(page, at, f"table {name!r} ends with 'end: {end}'"))
            return match.group()
        if name not in RENDERERS:
            problems.append(Problem(page, at, f"no renderer {name!r} (known: {list(RENDERERS)})"))
            return match.group()
        try:
            new = "\n".join(RENDERERS[name](page, reports, *shlex.split(args))) + "\n"
        except (FigureError, KeyError, TypeError, ValueError) as exc:
            problems.append(Problem(page, at, f"table {name}{args}: {exc!r}"))
            return match.group()
        if new != old:
            problems.append(Problem(page, at, f"table {name}{args} is not what its report says"))
        whole = match.string
        return whole[match.start() : match.start(3)] + new + whole[match.end(3) : match.end()]

    text = _BLOCK.sub(block, text)
    out, last = [], 0
    for match in _MARK.finditer(text):
        at = line_of(match.start())
        # Searched within the whole text, so that what precedes the stretch is seen.
        figure = _FIGURE.search(text, last, match.start())
        if figure is None:
            problems.append(Problem(page, at, f"no number just before {match.group()}"))
            out.append(text[last : match.end()])
            last = match.end()
            continue
        expression, spec = match.group(2), None
        with_spec = _SPEC.match(expression)
        if with_spec:
            expression, spec = with_spec.group(1), with_spec.group(2)
        number = figure.group("number")
        try:
            want = shown(evaluate(expression, match.group(1), reports), number, spec)
        except FigureError as exc:
            problems.append(Problem(page, at, f"{match.group()}: {exc}"))
            want = number
        if want != number:
            problems.append(
                Problem(page, at, f"{number} should be {want} ({match.group(1)}: {expression})")
            )
        out += [text[last : figure.start()], want, figure.group("tail"), match.group()]
        last = match.end()
    out.append(text[last:])
    return "".join(out), problems


def check(repo: Path = REPO) -> list[Problem]:
    """What differs from the reports on every page of ``repo``."""
    reports = Reports(repo / "reports")
    return [p for page in pages(repo) for p in render(page.read_text(), page, reports)[1]]


def write(repo: Path = REPO) -> list[Problem]:
    """Rewrite every page of ``repo`` from the reports; what could not be made."""
    reports = Reports(repo / "reports")
    left = []
    for page in pages(repo):
        text = page.read_text()
        new = render(text, page, reports)[0]
        if new != text:
            page.write_text(new)
        # What rendering fixed is gone on a second pass; what remains could not be made.
        left += render(new, page, reports)[1]
    return left


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m train.docfigures",
        description="Rewrite the figures and tables README.md and docs/ quote from reports/.",
    )
    p.add_argument("--check", action="store_true", help="only list what differs; exit 1 if any")
    args = p.parse_args(argv)
    problems = check() if args.check else write()
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
