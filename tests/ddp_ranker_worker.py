"""Run by tests/test_distributed.py under torchrun: train the ranking model's deep part with
DDP and let rank 0 save its weights. Not a test module itself."""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

from model.ranker import Ranker, RankerConfig
from tests.conftest import synthetic_ratings
from train.data.interactions import Interactions
from train.fitting.ranker_training import history_matrix, train_deep
from train.fitting.settings import RankerTrainConfig


def train_decoder(batch_size: int) -> torch.Tensor:
    """The deep part's decoder weights after three epochs on the synthetic data (both sides of
    the test): every step covers the same users, in the same order."""
    ratings = synthetic_ratings()
    users = ratings["user_id"].rank(method="dense").to_numpy().astype(int) - 1
    items = ratings["movie_id"].rank(method="dense").to_numpy().astype(int) - 1
    stars = ratings["rating"].to_numpy()
    config = RankerConfig(int(items.max()) + 1, hidden_dim=8, latent_dim=4)
    rated = Interactions(users, items, stars, int(users.max()) + 1, config.num_items)
    x, targets = history_matrix(rated, 0.6), history_matrix(rated, 0.3)
    torch.manual_seed(0)
    ranker = Ranker(config)
    train_deep(ranker, x, targets, RankerTrainConfig(batch_size=batch_size), epochs=3)
    return ranker.dae.decoder.weight.detach()


if __name__ == "__main__":
    dist.init_process_group("gloo")
    weights = train_decoder(batch_size=int(sys.argv[2]))
    if dist.get_rank() == 0:
        torch.save(weights, sys.argv[1])
    dist.destroy_process_group()
