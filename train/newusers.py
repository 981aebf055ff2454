"""New-user quality: rating error of fold-in, and the ranking new users and similar movies get.

    python -m train.newusers --dataset ml-100k              # preset fast, seed 0, both parts
    python -m train.newusers --seeds 0 1 2 --ridge 0.3 1 3 --json reports/newusers.json
    python -m train.newusers --dataset ml-1m --parts ranking --seeds 0 1 2   # ranking only
    python -m train.newusers --preset full --ranking-preset fast --no-retrain --seeds 0 1 2

Two parts, each on its own held-out users, printed as Markdown (``make evaluate`` writes it to
reports/<dataset>-newusers.md, and --json the figures; both end with the command, the commit
checked out when the run started, the machine, versions and date):

- ``rmse`` (:mod:`train.evaluation.newusers`): takes a share of users out of training, folds each in
  from their first 10 / 20 ratings in time order and predicts the rest; prints RMSE beside the same
  users' RMSE when a model is trained on those same first ratings, and beside the bias baseline.
  With about 70 test users on ML-100K the figures move by a few hundredths from seed to seed:
  --seeds runs several (other test users, other model initialization) and reports the range.
- ``ranking`` (:mod:`train.evaluation.newuser_ranking`): holds 10% of users out, trains the rating
  model, our ranking model and the ranking peers without them, folds each in from 10 random ratings
  and from 80% of them through the served Recommender, and scores Recall@10/@20 and NDCG@10 on the
  rest; then "more like this movie" lists seeded with one of their liked given movies.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from model import console
from model.artifact import cpu_name, provenance
from model.errors import DataError
from train import data
from train.evaluate import made_lines
from train.evaluation.newuser_ranking import OURS, RankingConfig, evaluate_ranking
from train.evaluation.newusers import NewUserConfig, evaluate_new_users, format_table, summarize
from train.fitting import settings
from train.train import dataset_name

log = logging.getLogger("train.newusers")

PARTS = ("rmse", "ranking")  # see the module docstring


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = NewUserConfig()
    p = console.parser("python -m train.newusers", __doc__)
    p.add_argument("--dataset", default="ml-100k", type=dataset_name)
    p.add_argument("--data-dir", default="data", help="one folder per dataset (default: data)")
    settings.add_preset_options(p, defaults.preset, only=("epochs",))
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
        help="fold-in prior weights to report; the ranking part uses the first "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[defaults.seed],
        help="one run per seed: test users and initialization (default: %(default)s)",
    )
    p.add_argument(
        "--no-retrain",
        action="store_true",
        help="rmse part: skip the model trained again with the test users' first ratings "
        "(the trained-on column: two more trainings per seed)",
    )
    p.add_argument(
        "--ranking-preset",
        default=None,
        choices=list(settings.PRESETS),
        help="ranking part: the rating model's preset (default: --preset's)",
    )
    p.add_argument(
        "--parts",
        nargs="+",
        default=list(PARTS),
        choices=PARTS,
        help="which evaluations to run (default: both)",
    )
    ranking = RankingConfig()
    p.add_argument(
        "--ranking-given",
        type=int,
        default=ranking.given,
        help="ranking part: ratings a new user gives in the first setting (default: %(default)s)",
    )
    p.add_argument(
        "--ranking-share",
        type=float,
        default=ranking.given_share,
        help="ranking part: share of their ratings given in the second (default: %(default)s)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch and BLAS threads (default: all)"
    )
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    if min(args.given) < 1 or args.min_targets < 1 or min(args.ridge) <= 0:
        p.error("--given and --min-targets must be >= 1, --ridge > 0")
    if not 0 < args.test_users < 1 or not 0 < args.ranking_share < 1:
        p.error("--test-users and --ranking-share are shares in (0, 1)")
    if args.ranking_given < 1:
        p.error("--ranking-given must be >= 1")
    return args


# Figures of the report's tables, aggregated over seeds.
RANKING_FIGURES = ("recall@10", "recall@20", "ndcg@10", "coverage@10", "popularity_percentile@10")
SIMILAR_FIGURES = ("hit_rate@10", "precision@10", "recall@10")


def aggregate(results: list[dict]) -> dict:
    """Mean and standard deviation over seeds of every figure of :func:`evaluate_ranking`:
    ``{setting: {"ranking": {model: {figure: {mean, std}}}, "similar": {...}}}``."""

    def stats(values: list[float]) -> dict:
        return {"mean": float(np.mean(values)), "std": float(np.std(values))}

    out = {}
    for setting, first in results[0]["settings"].items():
        runs = [r["settings"][setting] for r in results]
        out[setting] = {
            kind: {
                model: {f: stats([run[kind][model][f] for run in runs]) for f in figures}
                for model in first[kind]
            }
            for kind, figures in (("ranking", RANKING_FIGURES), ("similar", SIMILAR_FIGURES))
        }
    return out


def _fmt(s: dict) -> str:
    return f"{s['mean']:.4f} ± {s['std']:.4f}"


def markdown(results: list[dict]) -> str:
    """The ranking section of the new-user report, over the seeds of ``results``."""
    first, agg = results[0], aggregate(results)
    c = first["config"]
    seeds = ", ".join(str(r["seed"]) for r in results)
    lines = [
        "## Ranking for new users (strong generalization)",
        "",
        f"{first['dataset']}, seeds {seeds} (mean ± standard deviation over seeds). "
        f"{c['test_users']:.0%} of the users with at least {c['given'] + c['min_targets']} "
        f"ratings are held out of training ({first['held_out_users']} per seed). The rating "
        f"model ({c['preset']} preset), our ranking model and the peers are trained on the "
        f"other users' ratings less a random {c['validation']:.0%}, on which every choice is "
        "made (epochs, λ, blend weights, the peers' grids of train.peers.tuning). Each held-out "
        f"user then gives a random {c['given']} of their ratings, and again a random "
        f"{c['given_share']:.0%}; what they did not give is scored: relevant = rated 4 or more, "
        "candidates = every movie but the given ones, Recall@K = hits / min(K, relevant). "
        "movierec answers through the served path (Scorer.fold_in, then top_k_vectors "
        'with the given stars and rank_by="ranking", fold-in ridge '
        f"{c['ridge']:g}); peers fold the user in with score_history (EASE: x·B; iALS: "
        "least-squares user vector against its item factors; most popular: the chart).",
    ]
    for setting, tables in agg.items():
        run = first["settings"][setting]
        lines += [
            "",
            f"### {setting}: {run['users']} users, {run['given_ratings']} given ratings, "
            f"{run['scored_ratings']} scored (seed {first['seed']})",
            "",
            "| model | Recall@10 | Recall@20 | NDCG@10 | coverage@10 | popularity percentile |",
            "|---|---|---|---|---|---|",
        ]
        for model, row in tables["ranking"].items():
            pop = row["popularity_percentile@10"]
            lines.append(
                f"| {model} | {_fmt(row['recall@10'])} | {_fmt(row['recall@20'])} | "
                f"{_fmt(row['ndcg@10'])} | {_fmt(row['coverage@10'])} | "
                f"{pop['mean']:.1f} ± {pop['std']:.1f} |"
            )
        ours, ease = tables["ranking"].get(OURS), tables["ranking"].get("EASE")
        if ours and ease:
            ratio = {f: ours[f]["mean"] / max(ease[f]["mean"], 1e-12) for f in ours}
            lines += [
                "",
                f"movierec / EASE: Recall@10 {ratio['recall@10']:.3f}, Recall@20 "
                f"{ratio['recall@20']:.3f}, NDCG@10 {ratio['ndcg@10']:.3f} (target: at least "
                "1.000).",
            ]
    lines += [
        "",
        "### More like this movie",
        "",
        "Each held-out user with a given movie rated 4 or more asks for the 10 movies most like "
        "one of them (a random choice); the movie itself is never listed. A hit is a listed "
        "movie the user rated 4 or more among the ratings they did not give. Hit rate@10: "
        "share of users with at least one hit; precision@10: hits / 10; recall@10: hits / "
        "min(10, relevant). Users with no relevant movie left are not counted. movierec: "
        "Scorer.similar_indices (the served path: the ranking model's list for a user who "
        "liked only that movie); EASE: the movie's row of B; iALS: cosine of item factors; "
        "co-occurrence: cosine between the movies' columns of the 0/1 training matrix; most "
        "popular: the chart.",
        "",
    ]
    settings = list(agg)
    header = [f"{s}: {f}" for s in settings for f in ("hit rate@10", "precision@10", "recall@10")]
    lines += [
        "| model | " + " | ".join(header) + " |",
        "|---|" + "---|" * len(header),
    ]
    for model in agg[settings[0]]["similar"]:
        cells = [_fmt(agg[s]["similar"][model][f]) for s in settings for f in SIMILAR_FIGURES]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += ["", "### Chosen on validation, and time", ""]
    for r in results:
        chosen = "; ".join(
            f"{model}: " + ", ".join(f"{k}={v:g}" for k, v in params.items())
            for model, params in r["chosen"].items()
            if params
        )
        times = ", ".join(f"{k} {v:.0f} s" for k, v in r["seconds"].items())
        lines.append(f"- seed {r['seed']}: {chosen}. Time: {times}.")
    return "\n".join(lines)


def _rmse_part(dataset: data.Dataset, args: argparse.Namespace) -> tuple[list[dict], str]:
    results = []
    for seed in args.seeds:
        config = NewUserConfig(
            given=tuple(args.given),
            test_users=args.test_users,
            min_targets=args.min_targets,
            ridges=tuple(args.ridge),
            preset=args.preset,
            retrain=not args.no_retrain,
            seed=seed,
        )
        results.append(evaluate_new_users(dataset, config, epochs=args.epochs))
    tables = [format_table(r) + "\n" for r in results] if len(results) > 1 else []
    return results, "\n".join([*tables, summarize(results)])


def _ranking_part(dataset: data.Dataset, args: argparse.Namespace) -> tuple[list[dict], str]:
    results = []
    for seed in args.seeds:
        config = RankingConfig(
            test_users=args.test_users,
            given=args.ranking_given,
            given_share=args.ranking_share,
            min_targets=args.min_targets,
            ridge=args.ridge[0],
            preset=args.ranking_preset or args.preset,
            seed=seed,
        )
        results.append(evaluate_ranking(dataset, config, epochs=args.epochs))
    return results, markdown(results)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = " ".join(["python -m train.newusers", *(argv or sys.argv[1:])])
    # Taken at the start, as train.evaluate does: the commit whose code runs, not the one
    # checked out when a long run ends.
    made_by = provenance()
    report: dict = {"command": command, "cpu": cpu_name(), "provenance": made_by, "runs": []}
    sections = []
    started = time.perf_counter()
    try:
        dataset = data.load(args.dataset, args.data_dir)
        # --threads also caps BLAS (numpy/scipy: EASE's inverse), which otherwise takes every core.
        with threadpool_limits(args.threads, "blas") if args.threads else nullcontext():
            if "rmse" in args.parts:
                report["runs"], text = _rmse_part(dataset, args)
                sections.append("## Rating prediction for new users (fold-in RMSE)\n\n" + text)
            if "ranking" in args.parts:
                runs, text = _ranking_part(dataset, args)
                report["ranking"] = {"runs": runs, "aggregate": aggregate(runs)}
                sections.append(text)
    except (DataError, ValueError, FloatingPointError) as exc:
        log.error("%s", exc)
        return 1
    for result in report["runs"]:
        result["command"] = command
    report["seconds"] = seconds = time.perf_counter() - started
    print(f"# {dataset.name}: new users\n")
    print("\n\n".join(sections))
    print("\n" + "\n".join(made_lines(command, report["cpu"], made_by, seconds)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
