"""Write MovieLens-shaped synthetic data in the official ml-25m CSV format.

    python -m train.generate --ratings 25000000 --users 162541 --movies 59047 \\
        --out data/synthetic-25m --seed 0
    python -m train --dataset synthetic-25m     # read exactly as ml-25m's files would be

Power-law user activity and movie popularity, genres, titles, timestamps and half-star ratings
with a user/movie structure a model can learn (see model/datasets/synthetic.py). Generation runs
in blocks of users, so memory stays bounded whatever --ratings is.
"""

from __future__ import annotations

import argparse
import logging
import sys

from model import console
from train.data.registry import is_synthetic
from train.data.synthetic import SyntheticConfig, generate

log = logging.getLogger("train.generate")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = SyntheticConfig()
    p = console.parser("python -m train.generate", __doc__)
    p.add_argument("--ratings", type=int, default=defaults.num_ratings, help="total ratings")
    p.add_argument("--users", type=int, default=defaults.num_users)
    p.add_argument("--movies", type=int, default=defaults.num_movies, help="catalogue size")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument(
        "--out",
        default="data/synthetic",
        help="folder to write; train reads DATA_DIR/synthetic or DATA_DIR/synthetic-NAME",
    )
    p.add_argument(
        "--chunk-ratings",
        type=int,
        default=defaults.chunk_ratings,
        help="ratings generated per block: bounds memory",
    )
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = SyntheticConfig(
        num_ratings=args.ratings,
        num_users=args.users,
        num_movies=args.movies,
        seed=args.seed,
        chunk_ratings=args.chunk_ratings,
    )
    try:
        summary = generate(config, args.out, overwrite=args.overwrite)
    except (ValueError, OSError) as exc:
        log.error("%s", exc)
        return 1
    log.info("wrote %s: %s", args.out, summary)
    name = args.out.rstrip("/").rsplit("/", 1)[-1]
    if is_synthetic(name):
        parent = args.out.rstrip("/").rsplit("/", 1)[0] if "/" in args.out else "."
        log.info("train on it: python -m train --dataset %s --data-dir %s", name, parent)
    else:
        log.warning("python -m train --dataset reads only folders named synthetic[-NAME]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
