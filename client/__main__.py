"""python -m client: movierec from the command line.

    python -m client recommend --user 196 -k 10 [--genre Comedy] [--exclude-genre Horror]
                                                [--exclude 50 181] [--years 1990 1999]
                                                [--fallback popular] [--novelty 0.5] [--explain]
    python -m client rate --user 196 --movie 242 [302 ...]
    python -m client similar --movie 50 -k 10 [--novelty 0.5] [filters as for recommend]
    python -m client new-user --ratings 1=5 50=4.5 -k 10 [--predict 242 302] [filters]
    python -m client new-user --rate "Star Wars (1977)=5" --rate "fargo=4" [--explain]
    python -m client search "star wars" [-k 10]
    python -m client chart [-k 20] [--genre Comedy] [--years 1990 1999]
    python -m client wait                      # until the model answers (after a start)
    python -m client demo                      # example calls and their raw answers

new-user takes movies by id (--ratings ID=STARS ...) or by title (--rate TITLE=STARS, once per
movie), or both. A title is looked up with the search request and taken when one result is
spelled as typed (any case; the year may be left out) or when it is the only result; the
movie each title stands for is printed. A title that matches several movies stops the command
and lists them, so that one can be given by id or by its full title.

Finds the server (--url, $MOVIEREC_URL, ./config.properties, 127.0.0.1:8080) and its token
(--key-file, $MOVIEREC_KEY_FILE, ./key_file.json) itself. Prints tables (--json: the answer).
Requests larger than the interactive endpoint takes (more than 1,000 --predict ids, more than
250 ratings or --exclude ids) go to /predictions/movierec-bulk by themselves; a table's title
names the model that answered.

Exit status: 0 answered; 1 the server refused the request (400, 404, 413, other errors);
2 bad command line, or a title that names no movie or several; 3 no server, no key file, or
the token was refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Collection

from client import ClientError, MovieRecClient, TitleError
from model import console

EXIT_REFUSED, EXIT_USAGE, EXIT_CONNECTION = 1, 2, 3
LIST_K = 10  # list length of recommend, similar, new-user and search when -k is not given
CHART_K = 20  # a chart is browsed rather than acted on: a longer list by default


class CommandError(Exception):
    """The command line asks for something no request can say (exit status 2)."""


def _rating_pair(text: str) -> tuple[int, float]:
    """argparse type of ``--ratings``: ``MOVIE_ID=STARS``."""
    movie, sep, stars = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return int(movie), float(stars)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected MOVIE_ID=STARS (e.g. 50=4.5), got {text!r}"
        ) from None


def _title_rating(text: str) -> tuple[str, float]:
    """argparse type of ``--rate``: ``TITLE=STARS``, split at the last ``=`` (a title may
    hold one)."""
    title, sep, stars = text.rpartition("=")
    try:
        if not sep or not title.strip():
            raise ValueError
        return title.strip(), float(stars)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'expected TITLE=STARS (e.g. "Star Wars (1977)=5"), got {text!r}'
        ) from None


def _novelty(text: str) -> float:
    """argparse type of ``--novelty``: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:  # also false for NaN
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return value


def _list_options(default_k: int) -> argparse.ArgumentParser:
    """The options of every list: its length and the filters."""
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument(
        "-k", type=int, default=default_k, help=f"list length (default: {default_k})"
    )
    filters.add_argument(
        "--genre",
        nargs="+",
        default=None,
        metavar="GENRE",
        help="only movies with any of these genres",
    )
    filters.add_argument(
        "--exclude-genre",
        nargs="+",
        default=None,
        metavar="GENRE",
        help="no movies with any of these genres",
    )
    filters.add_argument(
        "--exclude",
        nargs="+",
        type=int,
        default=None,
        metavar="MOVIE_ID",
        help="leave these movies out",
    )
    filters.add_argument(
        "--years",
        nargs=2,
        type=int,
        default=None,
        metavar=("FIRST", "LAST"),
        help="only movies released in these years (both included)",
    )
    return filters


def _novelty_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--novelty",
        type=_novelty,
        default=None,
        metavar="0..1",
        help="0 (default): the list as ranked; up to 1: less obvious, less popular picks",
    )


def _explain_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--explain",
        action="store_true",
        help="under each movie, the rated movies that put it on the list",
    )


def _rank_by_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rank-by",
        choices=["ranking", "rating"],
        default=None,
        help="ranking (default): the ranking model; rating: highest predicted rating first",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=None, help="inference URL (default: found, see above)")
    common.add_argument("--key-file", default=None, help="TorchServe's key_file.json")
    common.add_argument(
        "--timeout", type=float, default=None, help="seconds (default: 10; wait and demo: 120)"
    )
    common.add_argument("--json", action="store_true", help="print the JSON answer instead")
    filters = _list_options(LIST_K)

    p = console.parser("python -m client", __doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rec = sub.add_parser("recommend", parents=[common, filters], help="top-K for a user")
    rec.add_argument("--user", type=int, required=True, help="user id")
    _rank_by_option(rec)
    rec.add_argument(
        "--fallback",
        choices=["popular"],
        default=None,
        help="popular movies if the user is unknown (instead of an error)",
    )
    _novelty_option(rec)
    _explain_option(rec)
    rate = sub.add_parser("rate", parents=[common], help="predicted ratings of a user")
    rate.add_argument("--user", type=int, required=True, help="user id")
    rate.add_argument("--movie", type=int, nargs="+", required=True, help="movie id(s)")
    similar = sub.add_parser("similar", parents=[common, filters], help="movies like a movie")
    similar.add_argument("--movie", type=int, required=True, help="movie id")
    _novelty_option(similar)
    new = sub.add_parser("new-user", parents=[common, filters], help="top-K from ratings")
    new.add_argument(
        "--ratings",
        type=_rating_pair,
        nargs="+",
        default=[],
        metavar="MOVIE_ID=STARS",
        help="the new user's ratings by movie id, e.g. 1=5 50=4.5",
    )
    new.add_argument(
        "--rate",
        type=_title_rating,
        action="append",
        default=[],
        metavar="TITLE=STARS",
        help='a rating by title, e.g. "Star Wars (1977)=5"; once per movie',
    )
    _rank_by_option(new)
    new.add_argument(
        "--predict",
        type=int,
        nargs="+",
        default=None,
        metavar="MOVIE_ID",
        help="also predict the user's rating of these movies",
    )
    _novelty_option(new)
    _explain_option(new)
    search = sub.add_parser("search", parents=[common], help="movies by title")
    search.add_argument("query", help='a title as typed, e.g. "star wars" or "heat 1995"')
    search.add_argument("-k", type=int, default=LIST_K, help=f"results (default: {LIST_K})")
    sub.add_parser("chart", parents=[common, _list_options(CHART_K)], help="the best-liked movies")
    sub.add_parser("wait", parents=[common], help="wait until the model answers")
    sub.add_parser("demo", parents=[common], help="example calls and their answers")
    args = p.parse_args(argv)
    if args.command == "new-user" and not (args.ratings or args.rate):
        new.error("give the new user's ratings: --ratings MOVIE_ID=STARS or --rate TITLE=STARS")
    return args


def format_table(headers: list[str], rows: list[list], right: Collection[int] = frozenset()) -> str:
    """A plain-text table; columns in ``right`` are right-aligned, long cells are cut."""
    cells = [[str(c) if len(str(c)) <= 48 else str(c)[:47] + "…" for c in row] for row in rows]
    widths = [max(len(h), *(len(r[j]) for r in cells)) for j, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if j in right else v.ljust(w) for j, (v, w) in enumerate(zip(values, widths))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])


def _stars(rating: float) -> str:
    return f"{rating:g}★"  # 5.0 -> 5★, 4.5 -> 4.5★


def because_line(entry: dict) -> str | None:
    """``because you rated X (5★), Y (4★)`` for an explained entry; None when it cites none."""
    cited = entry.get("because") or []
    if not cited:
        return None
    return "because you rated " + ", ".join(f"{c['title']} ({_stars(c['rating'])})" for c in cited)


def _movie_table(recs: list[dict], score: str) -> str:
    """One row per movie; a ``predicted`` column too when the entries carry a rating, and
    under an explained entry the rated movies that put it there."""
    if not recs:
        return "(no movies: every one is rated, excluded or filtered out)"
    rated = "rating" in recs[0]
    rows = [
        [n, r["movie_id"], f"{r['score']:.3f}"]
        + ([f"{r['rating']:.2f}"] if rated else [])
        + [r["title"], "|".join(r["genres"])]
        for n, r in enumerate(recs, 1)
    ]
    headers = ["#", "movie_id", score] + (["predicted"] if rated else []) + ["title", "genres"]
    table = format_table(headers, rows, right={0, 1, 2, 3} if rated else {0, 1, 2})
    lines = table.split("\n")
    out = lines[:2]  # the header and its rule
    for line, entry in zip(lines[2:], recs):
        out.append(line)
        reason = because_line(entry)
        if reason:
            # Indented, so that it reads as part of the row above rather than a row of its own.
            out.append(f"   {reason}")
    return "\n".join(out)


def search_table(results: list[dict]) -> str:
    """One row per search result: id, title, year, genres and how many ratings it has."""
    rows = [
        [
            r["movie_id"],
            r["title"],
            "-" if r.get("year") is None else r["year"],
            "|".join(r["genres"]),
            r["ratings"],
        ]
        for r in results
    ]
    return format_table(["movie_id", "title", "year", "genres", "ratings"], rows, {0, 2, 4})


def candidates_table(candidates: list[dict]) -> str:
    """The movies an ambiguous title may mean: id, title and year, to pick one from."""
    rows = [
        [c["movie_id"], c["title"], "-" if c.get("year") is None else c["year"]] for c in candidates
    ]
    return format_table(["movie_id", "title", "year"], rows, {0, 2})


def _score_name(answer: dict) -> str:
    """What a list's scores are: the ranking model's, or predicted ratings."""
    return "score" if answer.get("ranked_by") == "ranking" else "predicted"


def _model(answer: dict) -> str:
    model = answer.get("model") or {}
    return f"(model {model.get('name', '?')} {model.get('version', '?')})"


def _filter_args(args: argparse.Namespace) -> dict:
    return {
        "genres": args.genre,
        "exclude_genres": args.exclude_genre,
        "exclude_movie_ids": args.exclude,
        "years": tuple(args.years) if args.years else None,
    }


def resolve_ratings(api: MovieRecClient, args: argparse.Namespace) -> tuple[dict, list[str]]:
    """The new user's ``{movie_id: stars}`` from ``--ratings`` and the titles of ``--rate``,
    and one line per title saying which movie it was taken for.

    Raises
    ------
    TitleError
        A title names no movie or several.
    CommandError
        Two ratings are of the same movie (the request could not say which one counts).
    """
    ratings = dict(args.ratings)
    resolved = []
    for title, stars in args.rate:
        movie = api.resolve_title(title)
        movie_id = movie["movie_id"]
        if movie_id in ratings:
            raise CommandError(f"{title!r} is movie {movie_id} ({movie['title']}), rated already")
        ratings[movie_id] = stars
        resolved.append(f"{title!r} -> {movie_id} {movie['title']} ({_stars(stars)})")
    return ratings, resolved


def _recommend(api: MovieRecClient, args: argparse.Namespace) -> str:
    answer = api.top_k(
        args.user,
        args.k,
        **_filter_args(args),
        fallback=args.fallback,
        rank_by=args.rank_by,
        novelty=args.novelty,
        explain=args.explain,
    )
    if args.json:
        return json.dumps(answer)
    if answer.get("fallback"):
        title = f"User {args.user} is unknown: popular movies instead {_model(answer)}"
        return f"{title}\n{_movie_table(answer['recommendations'], 'bayes avg')}"
    title = f"Top {args.k} for user {args.user} {_model(answer)}"
    return f"{title}\n{_movie_table(answer['recommendations'], _score_name(answer))}"


def _rate(api: MovieRecClient, args: argparse.Namespace) -> str:
    answers = [api.predict({"user_id": args.user, "movie_id": m}) for m in args.movie]
    if args.json:
        return json.dumps(answers)
    rows = [
        [a["movie_id"], f"{a['rating']:.3f}", a["title"], "|".join(a["genres"])] for a in answers
    ]
    table = format_table(["movie_id", "predicted", "title", "genres"], rows, right={0, 1})
    return f"Predicted ratings of user {args.user} {_model(answers[0])}\n{table}"


def _similar(api: MovieRecClient, args: argparse.Namespace) -> str:
    answer = api.similar(args.movie, args.k, **_filter_args(args), novelty=args.novelty)
    if args.json:
        return json.dumps(answer)
    movie = answer["movie"]
    title = f"Movies like {movie['movie_id']} {movie['title']} {_model(answer)}"
    return f"{title}\n{_movie_table(answer['recommendations'], 'score')}"


def _new_user(api: MovieRecClient, args: argparse.Namespace) -> str:
    ratings, resolved = resolve_ratings(api, args)
    answer = api.new_user(
        ratings,
        args.k,
        args.predict,
        **_filter_args(args),
        rank_by=args.rank_by,
        novelty=args.novelty,
        explain=args.explain,
    )
    if args.json:
        # stdout stays one JSON document; what the titles stood for goes beside it.
        for line in resolved:
            print(line, file=sys.stderr)
        return json.dumps(answer)
    lines = [*resolved, f"Top {args.k} for a new user from {len(ratings)} ratings {_model(answer)}"]
    if answer["unknown_movie_ids"]:
        unknown = ", ".join(map(str, answer["unknown_movie_ids"]))
        lines.append(f"(ignored, unknown to the model: movie ids {unknown})")
    lines.append(_movie_table(answer["recommendations"], _score_name(answer)))
    if answer.get("predictions"):
        rows = [
            [p["movie_id"], f"{p['rating']:.3f}", p["title"], "|".join(p["genres"])]
            for p in answer["predictions"]
        ]
        lines += [
            "",
            "Predicted ratings",
            format_table(["movie_id", "predicted", "title", "genres"], rows, {0, 1}),
        ]
    return "\n".join(lines)


def _search(api: MovieRecClient, args: argparse.Namespace) -> str:
    results = api.search(args.query, args.k)
    if args.json:
        return json.dumps(results)
    if not results:
        return f"(no movie matches {args.query!r})"
    return f"Movies matching {args.query!r}\n{search_table(results)}"


def _chart(api: MovieRecClient, args: argparse.Namespace) -> str:
    recs = api.chart(args.k, **_filter_args(args))
    if args.json:
        return json.dumps(recs)
    return f"Top {args.k} popular movies\n{_movie_table(recs, 'bayes avg')}"


# One body of each kind and option, as a newcomer would try them against ML-100K.
DEMO_BODIES = (
    {"user_id": 196, "movie_id": 242},
    {"pairs": [[196, 242], [186, 302]]},
    {"user_id": 196, "k": 3},
    {"user_id": 196, "k": 3, "rank_by": "rating"},
    {"user_id": 196, "k": 3, "genres": ["Comedy"], "exclude_movie_ids": [169]},
    {"ratings": {"1": 5, "50": 4.5, "99999": 3}, "k": 3, "movie_ids": [242]},
    {"user_id": 196, "k": 3, "explain": True, "novelty": 0.5, "years": [1990, 1999]},
    {"similar_to": 50, "k": 3},
    {"user_id": 99999, "k": 3, "fallback": "popular"},
    {"user_id": 99999, "k": 3},
    {"search": "star wars", "k": 3},
    {"chart": "popular", "k": 3, "genres": ["Comedy"]},
)


def _demo(api: MovieRecClient, args: argparse.Namespace) -> str:
    out = []
    for body in DEMO_BODIES:
        path = api.path_for(body)  # where predict would send it
        status, reply = api.request("POST", path, body)
        out.append(f"POST {path} {json.dumps(body)}\n  -> {status} {json.dumps(reply)}\n")
    return "\n".join(out)


def _wait(api: MovieRecClient, args: argparse.Namespace) -> str:
    return f"model {api.model} at {api.url} is ready"


COMMANDS = {
    "recommend": _recommend,
    "rate": _rate,
    "similar": _similar,
    "new-user": _new_user,
    "search": _search,
    "chart": _chart,
    "demo": _demo,
    "wait": _wait,
}


def run(api: MovieRecClient, args: argparse.Namespace) -> str:
    """Make the calls of one command and return what to print."""
    return COMMANDS[args.command](api, args)


def explain(exc: ClientError) -> str:
    """A message for a failed command that says what to do about it."""
    where = f" [{exc.field}]" if exc.field else ""
    if exc.kind == "bad_request":
        return f"bad request{where}: {exc.message}"
    if exc.kind == "not_found":
        hint = ""
        if exc.field == "user_id":
            hint = " (recommend --fallback popular ranks popular movies instead)"
        return f"not found{where}: {exc.message}{hint}"
    if exc.kind == "too_large":
        return f"too large{where}: {exc.message}"
    if exc.kind == "token":
        return (
            f"the server refused the token ({exc.message}), also after re-reading the key "
            "file. TorchServe writes new keys to key_file.json in the folder it starts from; "
            "they expire (token_expiration_min, 60 by default) unless renewed, which the key "
            "supervisor that make serve starts does (python -m client.keys). Run from that "
            "folder, or give --key-file / MOVIEREC_KEY_FILE."
        )
    if exc.kind == "unreachable":
        return f"{exc.message}: is TorchServe running (make serve)? Otherwise give --url."
    if exc.kind == "no_key":
        return exc.message
    return f"server error: {exc}"


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        if args.command in ("wait", "demo"):
            # Right after a start: wait for the key file and a worker.
            api = MovieRecClient.connect(args.url, args.key_file, timeout=args.timeout or 120.0)
        else:
            api = MovieRecClient(args.url, key_file=args.key_file, timeout=args.timeout or 10.0)
        print(run(api, args))
    except TitleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.candidates:
            print(candidates_table(exc.candidates), file=sys.stderr)
            print("(rate it by id with --ratings MOVIE_ID=STARS)", file=sys.stderr)
        return EXIT_USAGE
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ClientError as exc:
        print(f"error: {explain(exc)}", file=sys.stderr)
        refused = exc.kind in ("bad_request", "not_found", "too_large", "server")
        return EXIT_REFUSED if refused else EXIT_CONNECTION
    return 0


if __name__ == "__main__":
    sys.exit(main())
