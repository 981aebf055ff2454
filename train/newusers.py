"""New-user quality: fold-in from a user's first ratings against training on them.

    python -m train.newusers --dataset ml-100k              # preset fast, seed 0, 10 / 20 given
    python -m train.newusers --seeds 0 1 2 --ridge 0.3 1 3 --json reports/newusers.json

Takes a share of users out of training, folds each in from their first 10 / 20 ratings in time
order and predicts the rest; prints RMSE beside the same users' RMSE when a model is trained on
those same first ratings, and beside the bias baseline (protocol: :mod:`model.newusers`).
With about 70 test users on ML-100K the figures move by a few hundredths from seed to seed:
--seeds runs several (other test users, other model initialization) and reports the range.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from model import data
from model.errors import DataError
from model.experiment import PRESETS
from model.newusers import NewUserConfig, evaluate_new_users, format_table, summarize
from train.train import _dataset_name

log = logging.getLogger("train.newusers")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = NewUserConfig()
    p = argparse.ArgumentParser(
        prog="python -m train.newusers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", default="ml-100k", type=_dataset_name)
    p.add_argument("--data-dir", default="data", help="one folder per dataset (default: data)")
    p.add_argument("--preset", default=defaults.preset, choices=sorted(PRESETS))
    p.add_argument("--epochs", type=int, help="override the preset's epoch bound")
    p.add_argument(
        "--given",
        type=int,
        nargs="+",
        default=list(defaults.given),
        help="ratings given to the fold-in (default: %(default)s)",
    )
    p.add_argument(
        "--test-users",
        type=float,
        default=defaults.test_users,
        help="share of eligible users held out (default: %(default)s)",
    )
    p.add_argument(
        "--min-targets",
        type=int,
        default=defaults.min_targets,
        help="ratings left to predict per test user, at least",
    )
    p.add_argument(
        "--ridge",
        type=float,
        nargs="+",
        default=list(defaults.ridges),
        help="fold-in prior weights to report (default: %(default)s)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[defaults.seed],
        help="one run per seed: test users and initialization (default: 0)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    if min(args.given) < 1 or args.min_targets < 1 or min(args.ridge) <= 0:
        p.error("--given and --min-targets must be >= 1, --ridge > 0")
    if not 0 < args.test_users < 1:
        p.error("--test-users is a share in (0, 1)")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = " ".join(["python -m train.newusers", *(argv or sys.argv[1:])])
    results = []
    try:
        dataset = data.load(args.dataset, args.data_dir)
        for seed in args.seeds:
            config = NewUserConfig(
                given=tuple(args.given),
                test_users=args.test_users,
                min_targets=args.min_targets,
                ridges=tuple(args.ridge),
                preset=args.preset,
                seed=seed,
            )
            results.append(evaluate_new_users(dataset, config, epochs=args.epochs))
            results[-1]["command"] = command
    except (DataError, ValueError, FloatingPointError) as exc:
        log.error("%s", exc)
        return 1
    if len(results) > 1:
        for result in results:
            print(format_table(result) + "\n")
    print(summarize(results))
    print(f"\n{sum(r['seconds'] for r in results):.0f} s; command: {command}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": command, "runs": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
