"""Training state: resuming from a checkpoint, and 2-process DistributedDataParallel."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.conftest import item_ratings, tiny_autorec
from tests.ddp_ranker_worker import train_decoder
from tests.ddp_worker import train_codes
from train.data.prepared import encode
from train.fitting.settings import AutoRecTrainConfig
from train.fitting.training import fit_autorec

REPO = Path(__file__).resolve().parent.parent


def test_resumed_training_ends_where_an_uninterrupted_run_does(ratings, vocab, tmp_path):
    data = encode(ratings, vocab)
    config = AutoRecTrainConfig(epochs=4, batch_size=8, l2=70.0, dropout=0.2, patience=10)

    def run(epochs: int, checkpoint=None):
        net, items = tiny_autorec(vocab, data), item_ratings(data, vocab)
        config.epochs = epochs
        history = fit_autorec(net, items, data, config, progress=False, checkpoint=checkpoint)
        return net.export(items).item_codes.detach(), history

    uninterrupted, full_history = run(4)
    run(2, tmp_path / "ckpt.pt")  # "interrupted" after epoch 2
    assert (tmp_path / "ckpt.pt").exists() and not (tmp_path / "ckpt.pt.tmp").exists()
    resumed, resumed_history = run(4, tmp_path / "ckpt.pt")  # a new process would do this
    assert torch.equal(resumed, uninterrupted)
    assert [h["val_rmse"] for h in resumed_history] == [h["val_rmse"] for h in full_history]


def _torchrun(worker: str, out: Path, batch_size: int) -> torch.Tensor:
    """Run ``worker`` in 2 processes (``batch_size`` per process and step); what it saved."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            worker,
            str(out),
            str(batch_size),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(out, weights_only=True)


def test_two_process_ddp_matches_one_process(tmp_path):
    ddp = _torchrun("tests/ddp_worker.py", tmp_path / "codes.pt", 4)
    single = train_codes(batch_size=8)  # one process, the same 8 items per step
    # Same steps and data; only the order of float additions differs (all-reduce).
    assert torch.allclose(ddp, single, atol=1e-4), (ddp - single).abs().max()
    assert not torch.allclose(ddp, train_codes(batch_size=4), atol=1e-4)  # the check can fail


def test_ranker_two_process_ddp_matches_one_process(tmp_path):
    ddp = _torchrun("tests/ddp_ranker_worker.py", tmp_path / "decoder.pt", 8)
    single = train_decoder(batch_size=16)  # one process, the same 16 users per step
    assert torch.allclose(ddp, single, atol=1e-4), (ddp - single).abs().max()
    assert not torch.allclose(ddp, train_decoder(batch_size=8), atol=1e-4)  # it can fail
