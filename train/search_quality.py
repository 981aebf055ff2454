"""Title search quality: does :class:`model.search.TitleIndex` find each movie of a catalogue
from what a person would type?

    python -m train.search_quality --dataset ml-1m

The index is built over the whole catalogue with each movie's number of ratings (the ties'
tie-breaker), as a server holding every rating would build it. Every title gives queries:

- clean: its main name lower-cased, without the article MovieLens moved to the end and
  without the year ("Godfather, The (1972)" -> "godfather");
- one typo: the clean query with one pair of adjacent, different letters swapped, and
  separately with one letter dropped (seeded), for clean queries of at least
  :data:`MIN_TYPO_LETTERS` letters only: one letter off a shorter name is often another name;
- typing: for names of two words or more, the first word and the first one, then two,
  characters of the second ("star w", "star wa");
- with the article: the clean query with the moved article in front ("the godfather"), for
  titles that have one;
- with the year: the clean query and the year ("heat 1995"), for titles that have one.

Remakes and namesakes ("Heat" of 1986 and of 1995) give the same query, which cannot tell
them apart: a query counts as answered by any movie whose clean query is the same (and, for a
query with the year, whose year is the same). Writes
``reports/search.md`` and ``reports/search.json``: the share of queries whose movie is first,
in the top 3 and in the top 10, against the targets, and the failures.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from model import console
from model.artifact import cpu_name, provenance
from model.errors import DataError
from model.search import TitleIndex, split_title, without_article
from model.titles import NO_YEAR, release_year
from model.vocab import Vocabulary
from train import data

log = logging.getLogger("train.search_quality")

MIN_TYPO_LETTERS = 4  # clean queries shorter than this get no typo queries
TOP_K = 10  # results asked for each query: the top-10 share is the widest reported
FAILURES_LISTED = 50  # failures listed per kind in the Markdown report (all in the JSON)
# The targets: (kind, rank the movie must reach, share of queries).
TARGETS = (("clean", 1, 0.95), ("transposed", 3, 0.90), ("dropped", 3, 0.90))
KINDS = {
    "clean": "clean (lower-cased, no article, no year)",
    "transposed": "one typo: two adjacent letters swapped",
    "dropped": "one typo: one letter dropped",
    "typing1": "typing: first word + 1 character of the second",
    "typing2": "typing: first word + 2 characters of the second",
    "article": "with the article in front",
    "year": "with the year",
}


@dataclass(frozen=True)
class Query:
    """One query of the evaluation: its ``text``, ``kind`` (a key of :data:`KINDS`) and the
    ``item_idx`` of the title it was made from."""

    text: str
    kind: str
    item_idx: int


def clean_query(title: str) -> str:
    """The main name of ``title``, lower-cased, without its moved article and its year:
    ``"Godfather, The (1972)"`` -> ``"godfather"``."""
    main, _ = split_title(title)
    return without_article(main).lower()


def article_query(title: str) -> str | None:
    """The clean query with the article MovieLens moved to the end in front:
    ``"Godfather, The (1972)"`` -> ``"the godfather"``; None for a title without one."""
    main, _ = split_title(title)
    bare = without_article(main)
    if bare == main:
        return None
    article = main[len(bare) :].strip(" ,").lower()
    glue = "" if article.endswith("'") else " "  # "L'" is typed joined: "l'homme"
    return f"{article}{glue}{bare.lower()}"


def _letters(text: str) -> list[int]:
    return [i for i, c in enumerate(text) if c.isalpha()]


def transposed(text: str, rng: np.random.Generator) -> str | None:
    """``text`` with one random pair of adjacent, different letters swapped; None when it
    has no such pair."""
    pairs = [i for i in range(len(text) - 1) if text[i].isalpha() and text[i + 1].isalpha()]
    pairs = [i for i in pairs if text[i] != text[i + 1]]  # swapping "ss" changes nothing
    if not pairs:
        return None
    i = pairs[int(rng.integers(len(pairs)))]
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def dropped(text: str, rng: np.random.Generator) -> str | None:
    """``text`` without one random letter; None when it has no letter."""
    letters = _letters(text)
    if not letters:
        return None
    i = letters[int(rng.integers(len(letters)))]
    return text[:i] + text[i + 1 :]


def queries(titles: np.ndarray, seed: int = 0) -> list[Query]:
    """Every query of every title, in title order (see the module's description)."""
    rng = np.random.default_rng(seed)
    out = []
    for item_idx, title in enumerate(titles):
        clean = clean_query(str(title))
        if not clean.strip():
            continue
        out.append(Query(clean, "clean", item_idx))
        if len(_letters(clean)) >= MIN_TYPO_LETTERS:
            for kind, typo in (("transposed", transposed), ("dropped", dropped)):
                text = typo(clean, rng)
                if text is not None:
                    out.append(Query(text, kind, item_idx))
        words = clean.split()
        if len(words) >= 2:
            for n in (1, 2):
                out.append(Query(f"{words[0]} {words[1][:n]}", f"typing{n}", item_idx))
        with_article = article_query(str(title))
        if with_article is not None:
            out.append(Query(with_article, "article", item_idx))
        year = release_year(str(title))
        if year != NO_YEAR:
            out.append(Query(f"{clean} {year}", "year", item_idx))
    return out


def rank_of_right(found: np.ndarray, right: set[int]) -> int | None:
    """1-based rank of the first of ``found`` that is in ``right``; None if none is."""
    for rank, item_idx in enumerate(found.tolist(), start=1):
        if item_idx in right:
            return rank
    return None


def namesakes(titles: np.ndarray) -> dict[str, set[int]]:
    """The movies of each clean query: several where titles clean alike (remakes), which a
    clean query cannot tell apart, so each is a right answer to the others' queries."""
    groups: dict[str, set[int]] = defaultdict(set)
    for item_idx, title in enumerate(titles):
        groups[clean_query(str(title))].add(item_idx)
    return groups


def _failure(
    query: Query, titles: np.ndarray, found: np.ndarray, scores: np.ndarray, rank: int | None
) -> dict:
    """One query whose movie is not first: what was wanted, what came first, both scores."""
    return asdict(query) | {
        "wanted": str(titles[query.item_idx]),
        "first": str(titles[found[0]]) if len(found) else None,
        "first_score": round(float(scores[0]), 1) if len(found) else None,
        "rank": rank,
        "score": round(float(scores[rank - 1]), 1) if rank else None,
    }


def evaluate(titles: np.ndarray, counts: np.ndarray | None, seed: int = 0) -> dict:
    """Build the index, ask every query, and gather the shares and failures per kind."""
    started = time.perf_counter()
    index = TitleIndex(titles, counts)
    build_s = time.perf_counter() - started
    groups, asked = namesakes(titles), queries(titles, seed)
    ranks: dict[str, list[int | None]] = defaultdict(list)
    ambiguous: dict[str, int] = defaultdict(int)
    texts: dict[str, set[str]] = defaultdict(set)
    failures: dict[str, list[dict]] = defaultdict(list)
    search_s = 0.0
    for query in asked:
        right = groups[clean_query(str(titles[query.item_idx]))]
        if query.kind == "year":  # the year tells remakes apart
            right = {i for i in right if index.years[i] == index.years[query.item_idx]}
        started = time.perf_counter()
        found, scores = index.search(query.text, TOP_K)
        search_s += time.perf_counter() - started
        rank = rank_of_right(found, right)
        ranks[query.kind].append(rank)
        ambiguous[query.kind] += len(right) > 1
        texts[query.kind].add(query.text)
        if rank != 1:
            failures[query.kind].append(_failure(query, titles, found, scores, rank))
    kinds = {
        kind: {
            "queries": len(got),
            "ambiguous_queries": ambiguous[kind],
            "distinct_texts": len(texts[kind]),
            **{
                f"top{k}": sum(r is not None and r <= k for r in got) / len(got)
                for k in (1, 3, TOP_K)
            },
        }
        for kind, got in ranks.items()
    }
    return {
        "movies": len(titles),
        "names": index.num_names,
        "build_s": build_s,
        "mean_search_ms": 1000 * search_s / max(len(asked), 1),
        "namesake_groups": sum(len(group) > 1 for group in groups.values()),
        "namesake_movies": sum(len(group) for group in groups.values() if len(group) > 1),
        "namesake_example": next(
            ([str(titles[i]) for i in sorted(g)] for g in groups.values() if len(g) > 1), []
        ),
        "short_clean_queries": sum(
            q.kind == "clean" and len(_letters(q.text)) < MIN_TYPO_LETTERS for q in asked
        ),
        "kinds": kinds,
        "targets": [
            {
                "kind": kind,
                "top": top,
                "target": share,
                "measured": kinds[kind][f"top{top}"],
                "met": kinds[kind][f"top{top}"] >= share,
            }
            for kind, top, share in TARGETS
        ],
        "failures": dict(failures),
    }


def _share(x: float) -> str:
    return f"{100 * x:.1f} %"


def _failure_lines(kind: str, listed: list[dict]) -> list[str]:
    lines = [
        f"### {KINDS[kind]}: {len(listed)} not first",
        "",
        "| query | wanted | first result (score) | the wanted movie's rank (score) |",
        "|---|---|---|---|",
    ]
    for failure in listed[:FAILURES_LISTED]:
        first = "(nothing)"
        if failure["first"] is not None:
            first = f"{failure['first']} ({failure['first_score']:g})"
        wanted = f"> {TOP_K}"
        if failure["rank"] is not None:
            wanted = f"{failure['rank']} ({failure['score']:g})"
        lines.append(f"| `{failure['text']}` | {failure['wanted']} | {first} | {wanted} |")
    if len(listed) > FAILURES_LISTED:
        lines.append(f"| ... {len(listed) - FAILURES_LISTED} more in search.json | | | |")
    return [*lines, ""]


def markdown(report: dict) -> str:
    """reports/search.md: the shares per kind of query, the targets, the failures and how the
    report was made."""
    meta, figures = report["meta"], report["figures"]
    lines = [
        f"# Title search quality ({meta['dataset']})",
        "",
        f"Every title of the {meta['dataset']} catalogue ({figures['movies']:,} movies, "
        f"{figures['names']:,} typable names) gives queries; `model.search.TitleIndex`, built over "
        "the whole catalogue with each movie's number of ratings, answers each with its top "
        f"{TOP_K}. A query is right at rank r when its movie is the r-th result.",
        "",
        "| query | queries | first | top 3 | top 10 |",
        "|---|---|---|---|---|",
    ]
    for kind, label in KINDS.items():
        got = figures["kinds"].get(kind)
        if got:
            lines.append(
                f"| {label} | {got['queries']:,} | {_share(got['top1'])} "
                f"| {_share(got['top3'])} | {_share(got[f'top{TOP_K}'])} |"
            )
    lines += ["", "| target | measured | |", "|---|---|---|"]
    for target in figures["targets"]:
        lines.append(
            f"| {KINDS[target['kind']]}: right movie "
            f"{'first' if target['top'] == 1 else 'in the top ' + str(target['top'])} "
            f"for >= {target['target']:.0%} | {_share(target['measured'])} "
            f"| {'met' if target['met'] else 'missed'} |"
        )
    clean, typing = figures["kinds"]["clean"], figures["kinds"]["typing1"]
    lines += [
        "",
        "## How the queries are made",
        "",
        "- clean: the main name (before any alternative title in parentheses), lower-cased, "
        'without the article MovieLens moves to its end and without the year: "Godfather, '
        'The (1972)" -> `godfather`. Accents and punctuation are kept as written.',
        f"- one typo: the clean query with one pair of adjacent, different letters swapped, and "
        f"separately with one letter dropped (seed {meta['seed']}); only for clean queries of "
        f"at least {MIN_TYPO_LETTERS} letters: {figures['short_clean_queries']} shorter ones "
        "get none, as one letter off a name that short is often another name.",
        "- typing: for clean queries of two words or more, the first word, a space and the first "
        "one (then two) characters of the second: `star w`, `star wa`. No target: the start of "
        "a name often begins other names too (sequels, series), and then the more-rated "
        f"movie comes first. The {typing['queries']:,} one-character queries are only "
        f"{typing['distinct_texts']:,} different texts, so at most about "
        f"{_share(typing['distinct_texts'] / typing['queries'])} of them can be first.",
        "- with the article, with the year: `the godfather` for the titles that have a moved "
        "article, `heat 1995` for those with a year (no target); a query with the year is "
        "right only for a movie of that year.",
        f"- namesakes: {figures['namesake_groups']} groups of titles ({figures['namesake_movies']}"
        f" movies) clean to the same query ({' and '.join(figures['namesake_example'])}, say),"
        " which cannot tell them apart: a query counts as right when the result is any movie "
        f"of its group. {clean['ambiguous_queries']} of the {clean['queries']:,} clean queries "
        "are such.",
        f"- speed: the index is built in {figures['build_s']:.2f} s and answers in "
        f"{figures['mean_search_ms']:.2f} ms per query on average here (the micro-benchmark "
        "`python -m loadtest.scenarios.micro --search-only` times 62,000 titles).",
        "",
        "## Failures",
        "",
        f"Queries whose movie is not first, the first {FAILURES_LISTED} of each kind in title "
        "order (all in search.json). Where the scores are equal, the wanted movie lost the tie "
        "to a movie with more ratings: another movie has the same name, often as its "
        "alternative title, or starts with what was typed.",
        "",
    ]
    for kind in KINDS:
        if report["failures"].get(kind):
            lines += _failure_lines(kind, report["failures"][kind])
    made = meta["provenance"]
    lines += [
        "## How it was made",
        "",
        f"- command: `{meta['command']}`",
        f"- machine: {meta['cpu']}, {made['machine']}",
        f"- versions: python {made['python']}, numpy {made['numpy']}, rapidfuzz "
        f"{meta['rapidfuzz']}, movierec {made['movierec']}, git {made['git_commit']}"
        + (" (uncommitted changes)" if made["git_dirty"] else ""),
        f"- date: {made['created']}; total time {meta['seconds']:.0f} s",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = console.parser("python -m train.search_quality", __doc__)
    p.add_argument("--dataset", default="ml-1m", choices=sorted(data.DATASETS))
    p.add_argument("--data-dir", default="data")
    p.add_argument("--seed", type=int, default=0, help="seed of the typo queries")
    p.add_argument("--out", default="reports", help="folder of search.md and search.json")
    args = p.parse_args(argv)
    started = time.perf_counter()
    made_by = provenance()  # the commit checked out when the run starts
    try:
        dataset = data.load(args.dataset, args.data_dir)
    except DataError as exc:
        log.error("%s", exc)
        return 1
    # The catalogue in dense-index order with every movie's ratings, as a server holding all
    # the dataset's ratings would index it.
    vocab = Vocabulary.build(dataset.ratings, dataset.movies, dataset.genre_names)
    figures = evaluate(vocab.titles, vocab.rating_count, args.seed)
    failures = figures.pop("failures")
    report = {
        "meta": {
            "dataset": dataset.name,
            "seed": args.seed,
            "command": " ".join(["python -m train.search_quality", *sys.argv[1:]]),
            "cpu": cpu_name(),
            "rapidfuzz": version("rapidfuzz"),
            "provenance": made_by,
            "seconds": time.perf_counter() - started,
        },
        "figures": figures,
        "failures": failures,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "search.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (out / "search.md").write_text(markdown(report))
    for target in figures["targets"]:
        log.info(
            "%s: top-%d %.1f %% (target %.0f %%)",
            target["kind"],
            target["top"],
            100 * target["measured"],
            100 * target["target"],
        )
    log.info("wrote %s and %s", out / "search.md", out / "search.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
