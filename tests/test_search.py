"""Title search (model.search) on a small hand-made catalogue whose right answers are known:
case, accents, punctuation, articles, alternative titles, years, typos, typing, ties; the
query builders and the scoring of train.search_quality; the micro-benchmark's structure."""

from __future__ import annotations

import numpy as np
import pytest
from rapidfuzz import fuzz, process

from model.search import (
    MAX_QUERY_LENGTH,
    MIN_SCORE,
    PREFIX_SCORE,
    TitleIndex,
    normalise,
    split_title,
    title_names,
    without_article,
)
from train import search_quality

CATALOGUE = [  # (title, number of ratings)
    ("Godfather, The (1972)", 900),  # 0
    ("Godfather: Part II, The (1974)", 700),  # 1
    ("Heat (1986)", 50),  # 2
    ("Heat (1995)", 800),  # 3
    ("Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)", 600),  # 4
    ("Shawshank Redemption, The (1994)", 1000),  # 5
    ("Star Wars: Episode IV - A New Hope (1977)", 950),  # 6
    ("Star Wars: Episode V - The Empire Strikes Back (1980)", 990),  # 7
    ("Stargate (1994)", 400),  # 8
    ("Star Trek: Generations (1994)", 300),  # 9
    ("Misérables, Les (1995)", 100),  # 10
    ("Boat, The (Das Boot) (1981)", 500),  # 11
    ("Life Is Beautiful (La Vita è bella) (1997)", 650),  # 12
    ("Blade Runner (1982)", 850),  # 13
    ("Blade Runner 2049 (2017)", 200),  # 14
    ("Toy Story (1995)", 880),  # 15
    ("Toys (1992)", 90),  # 16
    ("Schindler's List (1993)", 870),  # 17
    ("Сталкер (1979)", 10),  # 18
    ("Homme, L' (1990)", 5),  # 19
]
TITLES = [title for title, _ in CATALOGUE]
COUNTS = np.array([count for _, count in CATALOGUE])


@pytest.fixture(scope="module")
def index() -> TitleIndex:
    return TitleIndex(TITLES, COUNTS)


def first(index: TitleIndex, query: str) -> int:
    items, _ = index.search(query, 5)
    assert len(items), f"nothing found for {query!r}"
    return int(items[0])


@pytest.mark.parametrize(
    "query, item_idx",
    [
        ("godfather", 0),
        ("GODFATHER", 0),
        ("the godfather", 0),
        ("The Godfather (1972)", 0),
        ("godfather part ii", 1),
        ("amelie", 4),  # without the accent
        ("AMÉLIE", 4),
        ("fabuleux destin d'amelie poulain", 4),  # the alternative title
        ("le fabuleux destin d amélie poulain", 4),  # its article in front, apostrophe spaced
        ("les miserables", 10),
        ("misérables", 10),
        ("das boot", 11),
        ("the boat", 11),
        ("vita e bella", 12),  # the alternative title without its leading article
        ("life is beautiful", 12),
        ("shawshank redemption", 5),
        ("the shawshank redemption!", 5),
        ("schindlers list", 17),  # apostrophe dropped
        ("schindler's list", 17),
        ("сталкер", 18),  # a non-Latin script, case-folded
        ("l'homme", 19),  # an elided article moved to the end
        ("homme", 19),
    ],
)
def test_finds_the_movie_as_people_type_it(index, query, item_idx):
    assert first(index, query) == item_idx


def test_an_exact_name_scores_100_and_outranks_longer_names_it_starts(index):
    items, scores = index.search("godfather", 5)
    assert items[:2].tolist() == [0, 1]
    assert scores[0] == 100.0 and scores[1] == PREFIX_SCORE


@pytest.mark.parametrize(
    "query, item_idx",
    [
        ("godfahter", 0),  # transposed letters
        ("godfther", 0),  # a dropped letter
        ("shawshank redemtion", 5),
        ("shawshnak redemption", 5),
        ("amelei", 4),
        ("blade runer", 13),
    ],
)
def test_forgives_a_typo(index, query, item_idx):
    assert first(index, query) == item_idx


def test_a_year_picks_among_remakes(index):
    assert index.search("heat 1995", 2)[0].tolist() == [3, 2]
    assert index.search("heat 1995", 20)[1].min() >= MIN_SCORE
    assert index.search("heat 1986", 2)[0].tolist() == [2, 3]
    assert index.search("Heat (1986)", 2)[0].tolist() == [2, 3]


def test_a_number_in_a_title_is_not_taken_for_its_year(index):
    assert first(index, "blade runner 2049") == 14
    assert first(index, "blade runner 1982") == 13
    assert first(index, "blade runner") == 13


def test_equal_scores_go_to_the_more_rated_movie(index):
    items, scores = index.search("heat", 2)
    assert items.tolist() == [3, 2] and scores[0] == scores[1] == 100.0
    flipped = TitleIndex(TITLES, COUNTS[::-1].copy())  # now 1986 has more ratings than 1995
    assert flipped.search("heat", 2)[0].tolist() == [2, 3]


def test_without_counts_equal_scores_go_to_the_lower_index():
    assert TitleIndex(TITLES).search("heat", 2)[0].tolist() == [2, 3]


def test_typing_the_start_of_a_title(index):
    items, scores = index.search("star w", 4)
    assert items[:2].tolist() == [7, 6]  # both Star Wars, the more-rated first
    assert scores[0] == scores[1] == PREFIX_SCORE
    assert first(index, "star t") == 9
    assert first(index, "toy s") == 15  # not "Toys", one letter away from "toy s"
    assert first(index, "shawsh") == 5


@pytest.mark.parametrize("query", ["", "   ", "!!!", "-- :: --", "()", "🎬", "xqzvwj"])
def test_nothing_reasonable_gives_empty_arrays(index, query):
    items, scores = index.search(query, 10)
    assert items.shape == (0,) and scores.shape == (0,)
    assert items.dtype == np.int64 and scores.dtype == np.float32


def test_k_bounds_the_answer(index):
    items, scores = index.search("star", 100)
    assert 4 <= len(items) < len(TITLES) and len(items) == len(scores)
    assert len(set(items.tolist())) == len(items)  # each movie once
    assert np.all(np.diff(scores) <= 0)  # best first
    assert index.search("star", 1)[0].tolist() == [7]
    assert len(index.search("star", 0)[0]) == 0


def test_types_of_the_answer(index):
    items, scores = index.search("heat", 10)
    assert items.dtype == np.int64 and scores.dtype == np.float32
    assert items.ndim == scores.ndim == 1


def test_very_long_queries_are_answered(index):
    assert len(index.search("x" * 10_000, 5)[0]) == 0
    items, _ = index.search("godfather " * MAX_QUERY_LENGTH, 5)
    assert len(items) <= 5
    assert first(index, "the shawshank redemption" + " " * MAX_QUERY_LENGTH) == 5


def test_skipping_names_by_their_letters_never_drops_a_match():
    # The letter bound must keep every name fuzz.ratio scores at MIN_SCORE or more: compare
    # with scoring every name, on random names over a small alphabet (many near misses),
    # non-Latin letters and a name with more of one letter than a byte counts.
    rng = np.random.default_rng(0)
    letters = list("abcde xyz19ж")
    titles = ["".join(rng.choice(letters, rng.integers(1, 30))) + " (2000)" for _ in range(400)]
    titles.append("a" * 600 + " (2000)")
    index = TitleIndex(titles)
    scanner = index._scanner
    queries = [normalise(t[: rng.integers(1, 40)]) for t in titles[:100]] + ["a" * 590, "ж"]
    for query in filter(None, queries):
        items, scores = scanner.scan(query)
        every = process.cdist([query], scanner.names, scorer=fuzz.ratio, score_cutoff=MIN_SCORE)
        hits = np.flatnonzero(every[0])
        expected = sorted(zip(scanner.owners[hits].tolist(), every[0][hits].tolist()))
        assert sorted(zip(items.tolist(), scores.tolist())) == expected, query


def test_an_empty_catalogue_finds_nothing():
    items, scores = TitleIndex([]).search("heat", 5)
    assert len(items) == len(scores) == 0


def test_counts_must_match_the_titles():
    with pytest.raises(ValueError, match="counts"):
        TitleIndex(TITLES, COUNTS[:-1])


@pytest.mark.parametrize(
    "text, normalised",
    [
        ("Amélie", "amelie"),
        ("Schindler's List", "schindlers list"),
        ("Star Wars: Episode IV - A New Hope", "star wars episode iv a new hope"),
        ("  Rock & Roll  ", "rock and roll"),
        ("Kjærlighetens kjøtere", "kjaerlighetens kjotere"),
        ("Straße", "strasse"),
        ("!!!", ""),
    ],
)
def test_normalise(text, normalised):
    assert normalise(text) == normalised


def test_names_of_a_title():
    assert split_title("City of Lost Children, The (Cité des enfants perdus, La) (1995)") == (
        "City of Lost Children, The",
        ["Cité des enfants perdus, La"],
    )
    assert split_title("Shaun of the Dead (a.k.a. Zombies) (2004)") == (
        "Shaun of the Dead",
        ["Zombies"],
    )
    assert split_title("(500) Days of Summer (2009)") == ("(500) Days of Summer", [])
    assert title_names("Godfather, The (1972)") == ["godfather", "the godfather"]
    assert title_names("Homme, L' (1990)") == ["homme", "lhomme"]
    # MovieLens moves a main name's articles: a first word like one belongs to the name.
    assert title_names("Die Hard (1988)") == ["die hard"]
    assert title_names("Life Is Beautiful (La Vita è bella) (1997)") == [
        "life is beautiful",
        "vita e bella",
        "la vita e bella",
    ]
    assert without_article("Misérables, Les") == "Misérables"
    assert without_article("La Bamba") == "La Bamba"  # only the article MovieLens moved


# ----------------------------------------------------------------------- the quality report


def test_clean_and_article_queries():
    assert search_quality.clean_query("Godfather, The (1972)") == "godfather"
    assert search_quality.clean_query("Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)") == (
        "amélie"
    )
    assert search_quality.article_query("Godfather, The (1972)") == "the godfather"
    assert search_quality.article_query("Homme, L' (1990)") == "l'homme"
    assert search_quality.article_query("Heat (1995)") is None


def test_typos_change_one_letter_or_pair():
    rng = np.random.default_rng(0)
    for _ in range(50):
        swapped = search_quality.transposed("godfather", rng)
        assert swapped is not None and sorted(swapped) == sorted("godfather")
        diff = [i for i, (a, b) in enumerate(zip(swapped, "godfather")) if a != b]
        assert len(diff) == 2 and diff[1] == diff[0] + 1
        shorter = search_quality.dropped("god father", rng)
        assert shorter is not None and len(shorter) == 9 and " " in shorter
    assert search_quality.transposed("aa a", rng) is None  # no pair of different letters
    assert search_quality.dropped("1941", rng) is None


def test_queries_of_a_catalogue():
    asked = search_quality.queries(np.array(["Big (1988)", "Toy Story (1995)"]), seed=0)
    kinds = [(q.kind, q.item_idx) for q in asked]
    # "big" is too short for typos; "toy story" gets both typos and two typing queries.
    assert kinds == [
        ("clean", 0),
        ("year", 0),
        ("clean", 1),
        ("transposed", 1),
        ("dropped", 1),
        ("typing1", 1),
        ("typing2", 1),
        ("year", 1),
    ]
    assert [q.text for q in asked if q.kind.startswith("typing")] == ["toy s", "toy st"]
    assert [q.text for q in asked if q.kind == "year"] == ["big 1988", "toy story 1995"]


def test_rank_of_right():
    assert search_quality.rank_of_right(np.array([4, 2, 9]), {9, 2}) == 2
    assert search_quality.rank_of_right(np.array([4]), {9}) is None


def test_evaluation_counts_namesakes_as_right():
    figures = search_quality.evaluate(np.array(TITLES), COUNTS, seed=0)
    clean = figures["kinds"]["clean"]
    assert clean["queries"] == len(TITLES) and clean["top1"] == 1.0
    assert clean["ambiguous_queries"] == 2  # "heat" of 1986 and of 1995
    assert figures["namesake_groups"] == 1 and figures["namesake_movies"] == 2
    assert figures["kinds"]["year"]["top1"] == 1.0  # the year tells them apart
    assert [t["kind"] for t in figures["targets"]] == ["clean", "transposed", "dropped"]
    assert figures["names"] > len(TITLES)
    report = {
        "meta": {
            "dataset": "tiny",
            "seed": 0,
            "command": "python -m train.search_quality",
            "cpu": "a CPU",
            "rapidfuzz": "3.14.6",
            "provenance": {
                "machine": "x86_64, 2 CPUs",
                "python": "3.11",
                "numpy": "2.4",
                "movierec": "0.1.0",
                "git_commit": "abc",
                "git_dirty": False,
                "created": "today",
            },
            "seconds": 1.0,
        },
        "figures": {k: v for k, v in figures.items() if k != "failures"},
        "failures": figures["failures"],
    }
    text = search_quality.markdown(report)
    assert "| clean (lower-cased, no article, no year) | 20 | 100.0 % |" in text
    assert "right movie first for >= 95% | 100.0 % | met |" in text
    assert "(Heat (1986) and Heat (1995), say)" in text


# ----------------------------------------------------------------------- the micro-benchmark


def test_search_micro_benchmark_and_its_lines_in_the_bench_report():
    from loadtest.scenarios import bench, micro

    titles, counts = micro.generated_titles(300, seed=1)
    assert len(titles) == len(counts) == 300 and all(t.endswith(")") for t in titles)
    figures = micro.search_latency(num_titles=300, queries=20, budget_s=5)
    assert figures["titles"] == 300 and figures["queries"] == 20
    assert 0 < figures["p50_ms"] <= figures["p90_ms"] <= figures["max_ms"]
    assert set(figures["p50_ms_by_kind"]) <= set(search_quality.KINDS)
    lines = bench.search_section(
        figures | {"titles": 62_000, "p50_ms": 12.5, "p90_ms": 20.0, "queries": 1_000}
    )
    assert "| 1,000 | 12.50 | 20.00 |" in "\n".join(lines)
    assert "| title search over 62k titles <= 10 ms p50 | 12.5 ms | **not met** |" in lines
