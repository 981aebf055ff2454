"""python -m client: movierec from the command line.

    python -m client recommend --user 196 -k 10 [--genre Comedy] [--exclude-genre Horror]
                                                [--exclude 50 181] [--fallback popular]
    python -m client rate --user 196 --movie 242 [302 ...]
    python -m client similar --movie 50 -k 10 [filters as for recommend]
    python -m client new-user --ratings 1=5 50=4.5 -k 10 [--predict 242 302] [filters]
    python -m client wait                      # until the model answers (after a start)
    python -m client demo                      # example calls and their raw answers

Finds the server (--url, $MOVIEREC_URL, ./config.properties, 127.0.0.1:8080) and its token
(--key-file, $MOVIEREC_KEY_FILE, ./key_file.json) itself. Prints tables (--json: the answer).
Exit status: 0 answered; 1 the server refused the request (400, 404, other errors);
2 bad command line; 3 no server, no key file, or the token was refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Collection

from client import ClientError, MovieRecClient, cli

EXIT_REFUSED, EXIT_USAGE, EXIT_CONNECTION = 1, 2, 3


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=None, help="inference URL (default: found, see above)")
    common.add_argument("--key-file", default=None, help="TorchServe's key_file.json")
    common.add_argument(
        "--timeout", type=float, default=None, help="seconds (default: 10; wait and demo: 120)"
    )
    common.add_argument("--json", action="store_true", help="print the JSON answer instead")
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("-k", type=int, default=10, help="list length (default: 10)")
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

    p = cli.parser("python -m client", __doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rec = sub.add_parser("recommend", parents=[common, filters], help="top-K for a user")
    rec.add_argument("--user", type=int, required=True, help="user id")
    rec.add_argument(
        "--rank-by",
        choices=["ranking", "rating"],
        default=None,
        help="ranking (default): the ranking model; rating: highest predicted rating first",
    )
    rec.add_argument(
        "--fallback",
        choices=["popular"],
        default=None,
        help="popular movies if the user is unknown (instead of an error)",
    )
    rate = sub.add_parser("rate", parents=[common], help="predicted ratings of a user")
    rate.add_argument("--user", type=int, required=True, help="user id")
    rate.add_argument("--movie", type=int, nargs="+", required=True, help="movie id(s)")
    similar = sub.add_parser("similar", parents=[common, filters], help="movies like a movie")
    similar.add_argument("--movie", type=int, required=True, help="movie id")
    new = sub.add_parser("new-user", parents=[common, filters], help="top-K from ratings")
    new.add_argument(
        "--ratings",
        type=_rating_pair,
        nargs="+",
        required=True,
        metavar="MOVIE_ID=STARS",
        help="the new user's ratings, e.g. 1=5 50=4.5",
    )
    new.add_argument(
        "--rank-by",
        choices=["ranking", "rating"],
        default=None,
        help="ranking (default): the ranking model; rating: highest predicted rating first",
    )
    new.add_argument(
        "--predict",
        type=int,
        nargs="+",
        default=None,
        metavar="MOVIE_ID",
        help="also predict the user's rating of these movies",
    )
    sub.add_parser("wait", parents=[common], help="wait until the model answers")
    sub.add_parser("demo", parents=[common], help="example calls and their answers")
    return p.parse_args(argv)


def format_table(headers: list[str], rows: list[list], right: Collection[int] = frozenset()) -> str:
    """A plain-text table; columns in ``right`` are right-aligned, long cells are cut."""
    cells = [[str(c) if len(str(c)) <= 48 else str(c)[:47] + "…" for c in row] for row in rows]
    widths = [max(len(h), *(len(r[j]) for r in cells)) for j, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if j in right else v.ljust(w) for j, (v, w) in enumerate(zip(values, widths))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])


def _movie_table(recs: list[dict], score: str) -> str:
    """One row per movie; a ``predicted`` column too when the entries carry a rating."""
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
    return format_table(headers, rows, right={0, 1, 2, 3} if rated else {0, 1, 2})


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
    }


def run(api: MovieRecClient, args: argparse.Namespace) -> str:
    """Make the calls of one command and return what to print."""
    if args.command == "recommend":
        answer = api.top_k(
            args.user, args.k, **_filter_args(args), fallback=args.fallback, rank_by=args.rank_by
        )
        if args.json:
            return json.dumps(answer)
        if answer.get("fallback"):
            title = f"User {args.user} is unknown: popular movies instead {_model(answer)}"
            return f"{title}\n{_movie_table(answer['recommendations'], 'bayes avg')}"
        title = f"Top {args.k} for user {args.user} {_model(answer)}"
        return f"{title}\n{_movie_table(answer['recommendations'], _score_name(answer))}"
    if args.command == "rate":
        answers = [api.predict({"user_id": args.user, "movie_id": m}) for m in args.movie]
        if args.json:
            return json.dumps(answers)
        rows = [
            [a["movie_id"], f"{a['rating']:.3f}", a["title"], "|".join(a["genres"])]
            for a in answers
        ]
        table = format_table(["movie_id", "predicted", "title", "genres"], rows, right={0, 1})
        return f"Predicted ratings of user {args.user} {_model(answers[0])}\n{table}"
    if args.command == "similar":
        answer = api.similar(args.movie, args.k, **_filter_args(args))
        if args.json:
            return json.dumps(answer)
        movie = answer["movie"]
        title = f"Movies like {movie['movie_id']} {movie['title']} {_model(answer)}"
        return f"{title}\n{_movie_table(answer['recommendations'], 'score')}"
    if args.command == "new-user":
        ratings = dict(args.ratings)
        answer = api.new_user(
            ratings, args.k, args.predict, **_filter_args(args), rank_by=args.rank_by
        )
        if args.json:
            return json.dumps(answer)
        lines = [f"Top {args.k} for a new user from {len(ratings)} ratings {_model(answer)}"]
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
    if args.command == "demo":
        out = []
        for body in (
            {"user_id": 196, "movie_id": 242},
            {"pairs": [[196, 242], [186, 302]]},
            {"user_id": 196, "k": 3},
            {"user_id": 196, "k": 3, "rank_by": "rating"},
            {"user_id": 196, "k": 3, "genres": ["Comedy"], "exclude_movie_ids": [169]},
            {"ratings": {"1": 5, "50": 4.5, "99999": 3}, "k": 3, "movie_ids": [242]},
            {"similar_to": 50, "k": 3},
            {"user_id": 99999, "k": 3, "fallback": "popular"},
            {"user_id": 99999, "k": 3},
        ):
            status, reply = api.request("POST", f"/predictions/{api.model}", body)
            out.append(
                f"POST /predictions/{api.model} {json.dumps(body)}\n  -> {status} "
                f"{json.dumps(reply)}\n"
            )
        return "\n".join(out)
    return f"model {api.model} at {api.url} is ready"


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
    except ClientError as exc:
        print(f"error: {explain(exc)}", file=sys.stderr)
        refused = exc.kind in ("bad_request", "not_found", "server")
        return EXIT_REFUSED if refused else EXIT_CONNECTION
    return 0


if __name__ == "__main__":
    sys.exit(main())
