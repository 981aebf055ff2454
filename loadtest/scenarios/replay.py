"""The handler's answers to a fixed corpus of requests, recorded to a file or checked against one.

    python -m loadtest.scenarios.replay --artifact artifacts/ml-100k --record answers.jsonl
    python -m loadtest.scenarios.replay --artifact artifacts/ml-100k --check answers.jsonl

The corpus is drawn from ``--seed``: good requests of every kind and field (ratings, pairs,
top-K with each filter, ranking, novelty and explanations, new users, similar movies, the
chart, title searches), the fuzz scenario's malformed ones, in batches of 1 to 16 mixed rows
as TorchServe hands them to the handler (bodies as parsed JSON, as bytes and as text). Each line
of the recording is one batch: the status and the exact bytes of every answer. ``--check``
replays the recording's corpus and compares byte for byte: a change to the serving code that is
meant to keep every answer (a reshaping) shows here as "0 answers differ".

No server is started: the handler runs in-process through a real ``ts.context.Context``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path

import numpy as np

from loadtest.scenarios.fuzz import malformed
from model.recommender import Recommender

log = logging.getLogger("loadtest.scenarios.replay")

Row = dict[str, object]


def _good(rng: np.random.Generator, rec: Recommender) -> dict:
    """One well-formed request body of a kind and options drawn from ``rng``."""
    vocab = rec.vocab
    users, movies = vocab.user_ids, vocab.movie_ids

    def user() -> int:
        return int(users[rng.integers(0, len(users))])

    def movie() -> int:
        return int(movies[rng.integers(0, len(movies))])

    def options(body: dict, list_kind: bool = True) -> dict:
        genres = rec.genre_names
        if rng.random() < 0.3:
            body["k"] = int(rng.integers(1, 21))
        if rng.random() < 0.2:
            body["genres"] = [str(g) for g in rng.choice(genres, 2, replace=False)]
        if rng.random() < 0.15:
            body["exclude_genres"] = [str(rng.choice(genres))]
        if rng.random() < 0.15:
            body["exclude_movie_ids"] = [movie() for _ in range(3)]
        if rng.random() < 0.2:
            first = int(rng.integers(1930, 1995))
            body["years"] = [first, first + int(rng.integers(0, 30))]
        if list_kind and rng.random() < 0.3:
            body["novelty"] = float(rng.choice([0.0, 0.25, 0.5, 1.0]))
        return body

    draw = rng.random()
    if draw < 0.2:
        return {"user_id": user(), "movie_id": movie()}
    if draw < 0.3:
        return {"pairs": [[user(), movie()] for _ in range(int(rng.integers(1, 40)))]}
    if draw < 0.55:
        body = options({"user_id": user()})
        if rng.random() < 0.3:
            body["explain"] = True
        if rng.random() < 0.2:
            body["rank_by"] = str(rng.choice(["ranking", "rating"]))
        if rng.random() < 0.1:
            body["user_id"] = 10**8 + int(rng.integers(0, 100))  # unknown: the fallback
            body["fallback"] = "popular"
        return body
    if draw < 0.75:
        n = int(rng.integers(1, 30))
        stars = rng.integers(1, 6, n)
        body = options({"ratings": {str(movie()): int(s) for s in stars}})
        if rng.random() < 0.3:
            body["explain"] = True
        if rng.random() < 0.2:
            body["movie_ids"] = [movie() for _ in range(5)]
        return body
    if draw < 0.85:
        return options({"similar_to": movie()})
    if draw < 0.9:
        return options({"chart": "popular"}, list_kind=False)
    title = str(vocab.titles[rng.integers(0, len(vocab.titles))])
    typed = title[: int(rng.integers(3, max(4, len(title))))]
    return {"search": typed.lower() if rng.random() < 0.5 else typed, "k": 5}


def corpus(rec: Recommender, seed: int, batches: int) -> list[list[Row]]:
    """``batches`` batches of rows as TorchServe hands them to ``handle``."""
    rng = np.random.default_rng(seed)
    user, movie = int(rec.vocab.user_ids[0]), int(rec.vocab.movie_ids[0])
    out: list[list[Row]] = []
    for _ in range(batches):
        rows: list[Row] = []
        for _ in range(int(rng.integers(1, 17))):
            draw = rng.random()
            if draw < 0.25:
                raw, _ = malformed(rng, user, movie)
                if len(raw) > 200_000:  # over TorchServe's request size: never reaches a handler
                    raw = raw[:1000]
                rows.append({"body": raw})
            elif draw < 0.35:
                rows.append({"body": json.dumps(_good(rng, rec)).encode()})
            elif draw < 0.4:
                rows.append({"data": json.dumps(_good(rng, rec))})
            else:
                rows.append({"body": _good(rng, rec)})
        out.append(rows)
    return out


def answers(artifact: Path, batches: list[list[Row]]) -> list[list[tuple[int, str]]]:
    """Each batch's (status, answer text), from the handler loaded on ``artifact``."""
    from ts.context import Context, RequestProcessor

    from handler.movierec_handler import MovieRecHandler

    def context() -> Context:
        return Context(
            "movierec",
            str(artifact),
            {"model": {"modelName": "movierec", "modelVersion": "1.0"}},
            1,
            None,
            "0.12.0",
        )

    handler = MovieRecHandler()
    handler.initialize(context())
    out = []
    for rows in batches:
        ctx = context()
        ctx.request_processor = [RequestProcessor({}) for _ in rows]
        texts = handler.handle(rows, ctx)
        out.append([(int(ctx.get_response_status(i)[0]), t) for i, t in enumerate(texts)])
    return out


def _line(answered: list[tuple[int, str]]) -> str:
    return json.dumps([[status, text] for status, text in answered])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.scenarios.replay", description=__doc__
    )
    parser.add_argument("--artifact", type=Path, required=True, help="artifact folder to serve")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--record", type=Path, help="write the answers here (JSON lines)")
    what.add_argument("--check", type=Path, help="compare the answers with this recording")
    parser.add_argument("--seed", type=int, default=0, help="seed of the corpus")
    parser.add_argument("--batches", type=int, default=600, help="batches in the corpus")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    rec = Recommender.from_artifact(args.artifact)
    batches = corpus(rec, args.seed, args.batches)
    answered = answers(args.artifact, batches)
    lines = [_line(a) for a in answered]
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    total = sum(len(a) for a in answered)
    statuses: dict[int, int] = {}
    for batch in answered:
        for status, _ in batch:
            statuses[status] = statuses.get(status, 0) + 1
    print(f"{total} answers in {len(batches)} batches, statuses {dict(sorted(statuses.items()))}")
    if args.record:
        args.record.write_text("\n".join(lines) + "\n")
        print(f"recorded to {args.record}: sha256 {digest}")
        return 0
    recorded = args.check.read_text().splitlines()
    if len(recorded) != len(lines):
        print(f"the recording has {len(recorded)} batches, the corpus {len(lines)}")
        return 1
    differ = 0
    for n, (old, new) in enumerate(zip(recorded, lines)):
        if old == new:
            continue
        for m, (a, b) in enumerate(zip(json.loads(old), json.loads(new))):
            if a != b:
                differ += 1
                if differ <= 5:
                    print(f"batch {n} row {m}:\n  recorded {a}\n  now      {b}")
    print(f"{differ} answers differ of {total}: sha256 {digest}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
