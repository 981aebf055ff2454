"""Run by tests/test_distributed.py under torchrun: train the tiny autoencoder with DDP and
let rank 0 save the exported item codes. Not a test module itself."""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

from model.vocab import Vocabulary
from tests.conftest import GENRES, item_ratings, synthetic_movies, synthetic_ratings, tiny_autorec
from train.data.prepared import encode
from train.fitting.settings import AutoRecTrainConfig
from train.fitting.training import fit_autorec


def train_codes(batch_size: int) -> torch.Tensor:
    """Item codes after two epochs on the synthetic data (shared by both sides of the test)."""
    ratings = synthetic_ratings()
    vocab = Vocabulary.build(ratings, synthetic_movies(), GENRES)
    data = encode(ratings, vocab)
    net, items = tiny_autorec(vocab, data), item_ratings(data, vocab)
    config = AutoRecTrainConfig(epochs=2, batch_size=batch_size, l2=70.0, dropout=0.2, patience=5)
    fit_autorec(net, items, data, config, progress=False)
    return net.export(items).item_codes.detach()


if __name__ == "__main__":
    dist.init_process_group("gloo")
    codes = train_codes(batch_size=int(sys.argv[2]))
    if dist.get_rank() == 0:
        torch.save(codes, sys.argv[1])
    dist.destroy_process_group()
