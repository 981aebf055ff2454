"""Evaluation report: our model beside the baselines over several seeds, on a fixed protocol.

    python -m train.evaluate --dataset ml-100k         # u1.base/u1.test, 3 seeds
    python -m train.evaluate --dataset ml-1m           # random 90/10, 3 seeds
    python -m train.evaluate --dataset ml-1m --models peers --seeds 0   # ranking peers only

Writes ``reports/<dataset>.md``, ``.json`` and ``-curves.png``: test RMSE/MAE (mean and
standard deviation over seeds) and training time of the global mean, the bias baseline, plain
matrix factorization and our model (fast and full presets; the full preset serves the average
of its autoencoders blended with that matrix factorization, weights chosen on validation, and
the report gives them per seed), all trained in the same run on the same splits; the top-10
ranking of our model beside the ranking peers (most popular, EASE, rating-aware EASE, iALS:
:mod:`train.peers`), with Recall@10/@20, NDCG@10 and what the lists are beyond accuracy
(coverage, popularity, novelty, genre diversity, long tail); the accuracy of less obvious lists
against their popularity, ours beside penalised peers, and how faithful explanations are
(:mod:`train.tradeoff`, with ``-tradeoff.png``); learning curves; and the command, seeds,
versions and machine. Epochs, blend
weights, presets and the peers' hyperparameters are chosen on validation data only; the test
part is scored once, at the end.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from model import console
from model.artifact import cpu_name, provenance
from model.errors import DataError
from model.ranker import RankerConfig
from train import data, tradeoff
from train.data.prepared import Prepared, prepare, prepare_refit
from train.evaluation.ranking import ranking_on
from train.fitting.experiment import (
    RunResult,
    autorec_configs,
    refit_autorec,
    refit_mf,
    run_autorec,
    run_baselines,
    run_mf,
)
from train.fitting.ranker_training import fit_ranker, split_scorer
from train.fitting.settings import PRESETS, RankerTrainConfig, TrainConfig, preset_with
from train.peers import MostPopular, tune
from train.peers.tuning import peer_row, tune_peers

log = logging.getLogger("evaluate")

# Each preset of train.fitting.settings.PRESETS is one model of the report;
# "peers": the ranking peers of train.peers (seconds to a minute, no rating model trained);
# "ranker": our ranking model (model.ranker), blended with the last rating model trained.
MODELS = ("global", "bias", "mf", *PRESETS, "ranker", "peers")

# Figures of every ranking row, aggregated over seeds (see train.evaluation.ranking).
RANKING_METRICS = (
    "recall@10",
    "recall@20",
    "ndcg@10",
    "coverage@10",
    "popularity_percentile@10",
    "novelty@10",
    "diversity@10",
    "long_tail@10",
)


def protocol(dataset: data.Dataset, seed: int) -> data.Split:
    """ml-100k: the canonical u1 split; others: random 90/10, validation 5% of all ratings
    carved out of the training 90%."""
    if dataset.name == "ml-100k":
        return data.u1_split(dataset, validation=0.1, seed=seed)
    return data.random_split(dataset.ratings, validation=0.05, test=0.1, seed=seed)


def _ranker_row(prepared: Prepared, rating_model, seed: int) -> tuple[dict, tuple, dict]:
    """Our ranking model trained on the split (choices on validation), scored once on test;
    with its scorer and calibrated novelty strengths, and how faithful its explanations
    are."""
    started = time.perf_counter()
    config = RankerTrainConfig(seed=seed)
    ranker, fitted = fit_ranker(
        prepared, rating_model, RankerConfig(prepared.vocab.num_items), config
    )
    seconds = time.perf_counter() - started
    score = split_scorer(prepared, ranker, rating_model)
    row = {
        **ranking_on(score, prepared, "test"),
        "validation": ranking_on(score, prepared, "validation"),
        "params": fitted.chosen,
        "fit_seconds": seconds,
        "history": fitted.history,
        "grid": {"l2": fitted.l2_grid, "weights": fitted.weight_grid},
        "novelty_strengths": list(ranker.config.novelty_strengths),
    }
    faithful = {"seed": seed, **tradeoff.faithfulness(ranker, rating_model, prepared, seed)}
    return row, (score, list(ranker.config.novelty_strengths)), faithful


def _ranking(
    model, prepared: Prepared, seed: int, peers: bool, ranker: bool
) -> tuple[dict, dict | None]:
    """Ranking rows, keyed by model name: each holds its test figures at the top level, and
    ``validation`` (and, for a tuned model, ``params``, ``fit_seconds``, ``grid``); and, with
    both our ranking model and the peers, the trade-off curves and the faithfulness of
    explanations (:mod:`train.tradeoff`)."""
    rows, ours, faithful = {}, None, None
    if ranker:
        rows["movierec"], ours, faithful = _ranker_row(prepared, model, seed)
    if model is not None:
        score = lambda u: model.score_all(torch.from_numpy(u))
        rows["movierec, by predicted rating"] = {
            **ranking_on(score, prepared, "test"),
            "validation": ranking_on(score, prepared, "validation"),
        }
    tunings = None
    if peers:
        tunings = tune_peers(prepared, seed)
        tuned = {name: peer_row(tuning, prepared) for name, tuning in tunings.items()}
    else:  # the reference row every ranking table has, without the slower peers
        popular = tune(MostPopular, [{}], prepared)
        tuned = {"most popular": {"test": ranking_on(popular.peer.score, prepared, "test")}}
    for name, row in tuned.items():
        rows[name] = {**row.pop("test"), **row}
        log.info(
            "seed %d  %-22s test recall@10 %.4f ndcg@10 %.4f %s",
            seed,
            name,
            rows[name]["recall@10"],
            rows[name]["ndcg@10"],
            row.get("params") or "",
        )
    if ours is None or tunings is None:
        return rows, None
    curves = tradeoff.run(prepared, seed, ours, tunings)
    return rows, {"curves": curves, "faithfulness": faithful}


def run_seed(dataset: data.Dataset, seed: int, models: list[str]) -> dict:
    """Every requested model on the split of ``seed``: scores, seconds, histories, ranking.

    Each rating model is trained on the training part with every choice made on validation
    (the selection run), then refit on the training and validation parts with those choices
    (:func:`~train.data.prepared.prepare_refit`), and that refit is what test scores,
    once: validation figures are the selection run's, ``selection_test`` is the selection
    run's own test score (for the record, not chosen on), ``seconds`` both runs together.
    The ranking rows are of the selection run's models, trained on the training part."""
    split = protocol(dataset, seed)
    prepared = prepare(dataset, split)
    refit_data = prepare_refit(dataset, split)
    log.info("seed %d: %s", seed, split.protocol)
    out: dict = {"protocol": split.protocol, "models": {}, "histories": {}, "blends": {}}
    runs: list[tuple[RunResult, RunResult]] = []  # (selection, refit)
    if "global" in models or "bias" in models:
        wanted = {"global mean": "global", "bias baseline": "bias"}
        refits = {r.name: r for r in run_baselines(refit_data)}
        runs += [(r, refits[r.name]) for r in run_baselines(prepared) if wanted[r.name] in models]
    if "mf" in models:
        config = TrainConfig(seed=seed)
        mf = run_mf(prepared, config)
        runs.append((mf, refit_mf(refit_data, config, mf)))
    ranked = None
    for preset in PRESETS:
        if preset in models:
            configs = autorec_configs(prepared, preset, seed)
            run = run_autorec(prepared, configs)
            run.name = f"movierec ({preset} preset)"
            runs.append((run, refit_autorec(refit_data, configs, run)))
            ranked = run.model
    for run, refit in runs:
        out["models"][run.name] = {
            "validation": run.scores["validation"],
            "test": refit.scores["test"],
            "selection_test": run.scores["test"],
            "seconds": run.seconds + refit.seconds,
        }
        if run.history:
            out["histories"][run.name] = run.history
        if run.blend:
            out["blends"][run.name] = run.blend.to_dict()
        log.info(
            "seed %d  %-28s test rmse %.4f (trained on the training part alone %.4f)  %.1fs",
            seed,
            run.name,
            refit.scores["test"]["rmse"],
            run.scores["test"]["rmse"],
            run.seconds + refit.seconds,
        )
    if ranked is not None or {"peers", "ranker"} & set(models):
        out["ranking"], found = _ranking(
            ranked, prepared, seed, "peers" in models, "ranker" in models
        )
        if found is not None:
            out["tradeoff"] = found
    return out


def aggregate(per_seed: list[dict]) -> dict:
    """Mean and standard deviation over seeds of every figure."""

    def stats(values: list[float]) -> dict:
        return {"mean": float(np.mean(values)), "std": float(np.std(values))}

    names = per_seed[0]["models"]
    table = {
        name: {
            "test_rmse": stats([s["models"][name]["test"]["rmse"] for s in per_seed]),
            "test_mae": stats([s["models"][name]["test"]["mae"] for s in per_seed]),
            "val_rmse": stats([s["models"][name]["validation"]["rmse"] for s in per_seed]),
            "selection_test_rmse": stats(
                [s["models"][name]["selection_test"]["rmse"] for s in per_seed]
            ),
            "seconds": stats([s["models"][name]["seconds"] for s in per_seed]),
        }
        for name in names
    }
    ranking: dict[str, dict[str, Any]] = {}
    if "ranking" in per_seed[0]:
        for name in per_seed[0]["ranking"]:
            rows = [s["ranking"][name] for s in per_seed]
            ranking[name] = {
                metric: stats([r[metric] for r in rows])
                for metric in RANKING_METRICS
                if metric in rows[0]
            }
            if "params" in rows[0]:
                ranking[name]["params"] = [r["params"] for r in rows]  # chosen, per seed
                ranking[name]["fit_seconds"] = stats([r["fit_seconds"] for r in rows])
    out: dict[str, Any] = {"models": table, "ranking": ranking}
    if "tradeoff" in per_seed[0]:
        out["tradeoff"] = {
            "curves": tradeoff.mean_curves([s["tradeoff"] for s in per_seed]),
            "faithfulness": [s["tradeoff"]["faithfulness"] for s in per_seed],
        }
    return out


def plot_curves(per_seed: list[dict], path: Path, title: str) -> None:
    """Train and validation RMSE per epoch of every trained model, first seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (name, history), color in zip(per_seed[0]["histories"].items(), ("C0", "C1", "C2")):
        epochs = [h["epoch"] for h in history]
        ax.plot(
            epochs, [h["train_rmse"] for h in history], "--", color=color, label=f"{name}: train"
        )
        ax.plot(
            epochs, [h["val_rmse"] for h in history], "-", color=color, label=f"{name}: validation"
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("RMSE")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _chosen(params: list[dict] | None, seeds: list[int]) -> str:
    """Chosen hyperparameters over seeds: one setting, or each seed's when they differ."""
    if not params or not params[0]:
        return ""
    text = [", ".join(f"{k}={v:g}" for k, v in p.items()) for p in params]
    return (
        text[0] if len(set(text)) == 1 else "; ".join(f"seed {i}: {t}" for i, t in zip(seeds, text))
    )


def curves_note(dataset: str) -> str:
    """What the learning curves of the fast and full presets show on ``dataset``."""
    fast, full = (preset_with(name, dataset) for name in ("fast", "full"))
    length = ("epochs", "patience")  # how long a member trains, not what it learns
    member = lambda p: (
        p.hidden_dims,
        p.kernel_dim,
        {k: v for k, v in p.training.to_dict().items() if k not in length},
    )
    if member(fast) == member(full):
        return (
            "Learning curves of the first seed. The fast preset is the full preset's first "
            "member trained for fewer epochs, so its curve lies under the full preset's."
        )
    return (
        "Learning curves of the first seed (the full preset's: its first member's). On this "
        "dataset the presets train different networks: values chosen on its validation data "
        "(train/fitting/settings.py, CHOSEN_ON)."
    )


def _blend_lines(per_seed: list[dict], seeds: list[int]) -> list[str]:
    """The served blends of the report's rows: what they are, and the weights of each seed."""
    lines = []
    for name, first in per_seed[0].get("blends", {}).items():
        ae, mf = first["components"]
        lines += [
            f"**{name}** serves a blend: the {ae} and {mf} (the MF row's settings and seed, "
            "trained on the same split), `intercept + w_AE x autoencoders + w_MF x MF` on their "
            "unclamped predictions, clamped once. The weights and intercept are chosen by least "
            "squares on the validation ratings; the row's figures are the blend's (the refit "
            "reuses these weights). Components alone: trained on the training part.",
            "",
        ]
        varying = "slopes" in first
        if varying:
            lines += [
                "The weights and intercept vary with the user: each is `value + slope x z_u`, "
                "z_u the user's log number of training ratings, standardized over the training "
                "ratings; the slopes are chosen with the weights.",
                "",
            ]
        slope_head = " slope w_AE | slope w_MF | slope intercept |" if varying else ""
        lines += [
            "| seed | w_AE | w_MF | intercept |"
            + slope_head
            + " autoencoders alone: test RMSE | MF alone: test RMSE | MF best epoch |",
            "|---|---|---|---|" + "---|" * (3 if varying else 0) + "---|---|---|",
        ]
        for seed, run in zip(seeds, per_seed):
            blend = run["blends"][name]
            alone = [blend["component_scores"][c]["test"]["rmse"] for c in blend["components"]]
            slopes = (
                "".join(f" {s:+.3f} |" for s in [*blend["slopes"], blend["intercept_slope"]])
                if varying
                else ""
            )
            lines.append(
                f"| {seed} | {blend['weights'][0]:.3f} | {blend['weights'][1]:.3f} | "
                f"{blend['intercept']:+.3f} |{slopes} {alone[0]:.4f} | {alone[1]:.4f} | "
                f"{blend['mf']['best_epoch']} |"
            )
        lines.append("")
    return lines


def markdown(report: dict) -> str:
    """The report as Markdown."""
    agg, meta = report["aggregate"], report["meta"]
    fmt = lambda s: f"{s['mean']:.4f} ± {s['std']:.4f}"
    lines = [
        f"# {meta['dataset']}: rating prediction and ranking",
        "",
        f"Protocol: {meta['protocol']}. Seeds: {', '.join(map(str, meta['seeds']))} "
        "(mean ± standard deviation over seeds). Every model is trained in the same run on the "
        "same splits: first on the training part, with every choice (epochs, blend weights, "
        "served size) made on validation RMSE, then refit with those choices on the training "
        "and validation parts, and that refit is scored on test, once. The validation column "
        "is the first fit's; 'trained on the training part' is that first fit's test RMSE, "
        "for the record (nothing is chosen on it); the time is both fits'.",
        "",
    ]
    if agg["models"]:
        lines += [
            "| model | test RMSE | test MAE | validation RMSE | trained on the training part: "
            "test RMSE | training time (s) |",
            "|---|---|---|---|---|---|",
        ]
    for name, row in agg["models"].items():
        lines.append(
            f"| {name} | {fmt(row['test_rmse'])} | {fmt(row['test_mae'])} | "
            f"{fmt(row['val_rmse'])} | {fmt(row['selection_test_rmse'])} | "
            f"{row['seconds']['mean']:.1f} |"
        )
    if agg["ranking"]:
        lines += [
            *([""] if agg["models"] else []),
            "Top-10 ranking on test (relevant: test movies rated 4 or more; candidates: every "
            "movie the user rated in neither training nor validation; Recall@K = hits / "
            "min(K, relevant)). Coverage: share of all movies in at least one user's top-10; "
            "popularity: mean percentile of the recommended movies by training rating count "
            "(100 = the most rated); novelty: mean self-information of the recommended movies, "
            "-log2 of their share of the training ratings (bits); genre diversity: mean over "
            "lists of 1 - Jaccard of the genres of two listed movies; long tail: share of the "
            "recommended movies outside the most-rated movies that hold half of the training "
            "ratings. Peers learn from the training part; their hyperparameters are chosen on "
            "validation NDCG@10 (train.peers.tuning), fit time is the chosen setting's.",
            "",
            "| ranking | Recall@10 | Recall@20 | NDCG@10 | coverage@10 | popularity "
            "percentile | novelty (bits) | genre diversity | long-tail share | chosen on "
            "validation | fit (s) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, row in agg["ranking"].items():
            fit = f"{row['fit_seconds']['mean']:.1f}" if "fit_seconds" in row else ""
            beyond = " | ".join(
                f"{row[m]['mean']:.{d}f}" if m in row else ""
                for m, d in (("novelty@10", 2), ("diversity@10", 3), ("long_tail@10", 3))
            )
            lines.append(
                f"| {name} | {fmt(row['recall@10'])} | {fmt(row['recall@20'])} | "
                f"{fmt(row['ndcg@10'])} | {fmt(row['coverage@10'])} | "
                f"{row['popularity_percentile@10']['mean']:.1f} ± "
                f"{row['popularity_percentile@10']['std']:.1f} | {beyond} | "
                f"{_chosen(row.get('params'), meta['seeds'])} | {fit} |"
            )
    lines.append("")
    if report["per_seed"][0]["histories"]:
        lines += [f"![learning curves]({meta['dataset']}-curves.png)", ""]
    if {"movierec (fast preset)", "movierec (full preset)"} <= set(agg["models"]):
        lines += [curves_note(meta["dataset"]), ""]
    lines += _blend_lines(report["per_seed"], meta["seeds"])
    if "tradeoff" in agg:
        found = agg["tradeoff"]
        lines += tradeoff.markdown_lines(meta["dataset"], found["curves"], found["faithfulness"])
    lines += made_lines(meta["command"], meta["cpu"], meta["provenance"], meta["seconds"])
    return "\n".join(lines) + "\n"


def made_lines(command: str, cpu: str, made_by: dict, seconds: float) -> list[str]:
    """A report's last section: its command, machine, versions and commit
    (``made_by``: :func:`model.artifact.provenance` taken when the run started), date and
    total time."""
    return [
        "## How it was made",
        "",
        f"- command: `{command}`",
        f"- machine: {cpu}, {made_by['machine']}",
        f"- versions: python {made_by['python']}, torch {made_by['torch']},"
        f" numpy {made_by['numpy']}, movierec {made_by['movierec']}, "
        f"git {made_by['git_commit']}" + (" (uncommitted changes)" if made_by["git_dirty"] else ""),
        f"- date: {made_by['created']}; total time {seconds:.0f} s",
    ]


def main(argv: list[str] | None = None) -> int:
    p = console.parser("python -m train.evaluate", __doc__)
    p.add_argument("--dataset", default="ml-100k", choices=sorted(data.DATASETS))
    p.add_argument("--data-dir", default="data")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--out", default="reports", help="folder of the report files")
    p.add_argument(
        "--threads", type=int, default=None, help="torch and BLAS threads (default: all)"
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    # The code that runs is the commit checked out now, not at the end of a long run.
    made_by = provenance()
    try:
        dataset = data.load(args.dataset, args.data_dir)
    except DataError as exc:
        log.error("%s", exc)
        return 1
    # --threads also caps BLAS (numpy/scipy: EASE's inverse), which otherwise takes every core.
    with threadpool_limits(args.threads, "blas") if args.threads else nullcontext():
        per_seed = [run_seed(dataset, seed, args.models) for seed in args.seeds]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "meta": {
            "dataset": dataset.name,
            "protocol": per_seed[0]["protocol"],
            "seeds": args.seeds,
            "command": " ".join(["python -m train.evaluate", *sys.argv[1:]]),
            "cpu": cpu_name(),
            "provenance": made_by,
            "seconds": time.perf_counter() - started,
        },
        "aggregate": aggregate(per_seed),
        "per_seed": per_seed,
    }
    (out / f"{dataset.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    if per_seed[0]["histories"]:
        plot_curves(
            per_seed, out / f"{dataset.name}-curves.png", f"{dataset.name}, seed {args.seeds[0]}"
        )
    if "tradeoff" in report["aggregate"]:
        tradeoff.plot(
            report["aggregate"]["tradeoff"]["curves"],
            out / f"{dataset.name}-tradeoff.png",
            f"{dataset.name}: top-10 accuracy against popularity, seeds {args.seeds}",
        )
    (out / f"{dataset.name}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
