"""One artifact format: config, weights, vocabulary and metrics in one folder.

    config.json   model config, training config, dataset, split, provenance
    weights.pt    the rating model's state_dict (plain tensors: loads with weights_only=True)
    ranker.pt     the ranking model's state_dict (model.ranker), when the artifact has one
    vocab.npz     the id vocabulary (plain arrays: loads with allow_pickle=False)
    metrics.json  validation/test metrics of the model and the baselines, training history

Whatever loads an artifact rebuilds the network from config.json alone.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from model import __version__
from model.errors import DataError
from model.network import FactorModel, FactorModelConfig
from model.ranker import Ranker, RankerConfig
from model.vocab import Vocabulary

CONFIG, WEIGHTS, VOCAB, METRICS = "config.json", "weights.pt", "vocab.npz", "metrics.json"
RANKER = "ranker.pt"
FILES = (CONFIG, WEIGHTS, VOCAB, METRICS)  # every artifact's; RANKER is there when trained


def cpu_name() -> str:
    """The processor's model name (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def provenance() -> dict:
    """How and where an artifact is made: versions, machine, git commit, time."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    return {
        "movierec": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def save(
    directory: str | Path,
    model: FactorModel,
    vocab: Vocabulary,
    config: dict,
    metrics: dict,
    ranker: Ranker | None = None,
) -> Path:
    """Write an artifact folder atomically (a temporary folder renamed into place); the
    ranking model, when given, goes beside the rating model (config.json's ``ranker``)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        full_config = {"model": model.config.to_dict(), **config, "provenance": provenance()}
        if ranker is not None:
            full_config["ranker"] = ranker.config.to_dict()
            torch.save(ranker.state_dict(), tmp / RANKER)
        (tmp / CONFIG).write_text(json.dumps(full_config, indent=2) + "\n")
        torch.save(model.state_dict(), tmp / WEIGHTS)
        vocab.save(tmp / VOCAB)
        (tmp / METRICS).write_text(json.dumps(metrics, indent=2) + "\n")
        if directory.exists():
            shutil.rmtree(directory)
        tmp.rename(directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def load(directory: str | Path) -> tuple[FactorModel, Vocabulary, dict]:
    """Rebuild ``(model, vocabulary, config)`` from an artifact folder, in eval mode."""
    directory = Path(directory)
    missing = [f for f in (CONFIG, WEIGHTS, VOCAB) if not (directory / f).is_file()]
    if missing:
        raise DataError(f"{directory}: not a movierec artifact, missing {', '.join(missing)}")
    config = json.loads((directory / CONFIG).read_text())
    vocab = Vocabulary.load(directory / VOCAB)
    model = FactorModel(FactorModelConfig.from_dict(config["model"]))
    model.load_state_dict(torch.load(directory / WEIGHTS, map_location="cpu", weights_only=True))
    model.eval()
    return model, vocab, config


def load_ranker(directory: str | Path, config: dict) -> Ranker | None:
    """The artifact's ranking model, or None for an artifact made before it existed."""
    if "ranker" not in config:
        return None
    path = Path(directory) / RANKER
    if not path.is_file():
        raise DataError(f"{directory}: config.json names a ranking model but {RANKER} is missing")
    ranker = Ranker(RankerConfig.from_dict(config["ranker"]))
    ranker.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return ranker.eval()
