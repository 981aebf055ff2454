"""The ranking model: its parts, the pruned item-item form, training on data with a known answer,
and the artifact round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model import artifact
from model.ranker import Ranker, RankerConfig
from train.data.interactions import Interactions
from train.fitting.ranker_training import (
    fit_item_item,
    history_matrix,
    refit_ranker,
    train_deep,
)
from train.fitting.settings import RankerTrainConfig
from train.peers.ease import ease_weights


def rated(users, items, stars) -> Interactions:
    """The ratings of :func:`blocks`: 60 users, 12 movies."""
    return Interactions(users, items, stars, 60, 12)


def blocks(num_users: int = 60, num_items: int = 12, seed: int = 0):
    """Two tastes: users 0-29 like movies 0-5, users 30-59 movies 6-11. Each user rated all
    but one movie of their block, liked (5 stars), and one movie of the other block, 2 stars.
    The right first recommendation is the missing movie of their own block."""
    rng = np.random.default_rng(seed)
    users, items, stars, missing = [], [], [], []
    half = num_items // 2
    for u in range(num_users):
        own = 0 if u < num_users // 2 else half
        skip = own + u % half
        missing.append(skip)
        for i in range(own, own + half):
            if i != skip:
                users.append(u), items.append(i), stars.append(5.0)
        (
            users.append(u),
            items.append(int(rng.integers(half - own, 2 * half - own))),
            stars.append(2.0),
        )
    return np.array(users), np.array(items), np.array(stars), np.array(missing)


def test_history_rows_weigh_low_ratings():
    ranker = Ranker(RankerConfig(num_items=4, hidden_dim=3, latent_dim=2, low_weight=0.25))
    rows = ranker.histories(
        [np.array([0, 2]), np.array([3])], [np.array([5.0, 3.0]), np.array([4])]
    )
    assert rows.tolist() == [[1.0, 0.0, 0.25, 0.0], [0.0, 0.0, 0.0, 1.0]]


def test_scores_blend_the_parts_by_their_weights():
    torch.manual_seed(0)
    n = 6
    weights = torch.randn(n, n)
    weights.fill_diagonal_(0)
    config = RankerConfig(n, hidden_dim=4, latent_dim=2, deep_weight=0.5, rating_weight=0.2)
    ranker = Ranker(config, weights).eval()
    history = torch.tensor([[1.0, 0, 0.6, 0, 0, 0], [0, 1.0, 0, 0, 1.0, 0]])
    stars = torch.rand(2, n) * 4 + 1
    item_item = history @ weights
    deep = torch.log_softmax(ranker.dae(history), 1)
    expected = item_item / item_item.std(1, keepdim=True)
    expected += 0.5 * deep / deep.std(1, keepdim=True) + 0.2 * stars
    assert torch.allclose(ranker.scores(history, stars), expected, atol=1e-5)
    # Without predicted ratings (similar movies) the rating part is left out.
    assert torch.allclose(ranker.scores(history), expected - 0.2 * stars, atol=1e-5)


def test_served_deep_part_computes_the_dense_network():
    """Serving reads the encoder's columns sparsely and a transposed copy of the decoder; the
    logits must be the plain network's, and follow a change of its weights."""
    torch.manual_seed(0)
    ranker = Ranker(RankerConfig(40, hidden_dim=8, latent_dim=4, dropout=0.5)).eval()
    history = torch.zeros(3, 40)
    history[0, [1, 5, 7]] = 1.0
    history[1, [2, 30]] = torch.tensor([0.6, 1.0])
    dae = ranker.dae

    def dense():
        x = torch.nn.functional.normalize(history, dim=1)
        return dae.decoder(dae.encoder(x))

    with torch.no_grad():
        assert torch.allclose(dae(history), dense(), atol=1e-5)
        dae.decoder.weight.mul_(3.0)
        assert torch.allclose(dae(history), dense(), atol=1e-5)


def test_pruned_item_item_keeps_each_rows_strongest_weights():
    torch.manual_seed(1)
    n, keep = 8, 3
    weights = torch.randn(n, n)
    dense = Ranker(RankerConfig(n, hidden_dim=4, latent_dim=2), weights)
    pruned = Ranker(RankerConfig(n, hidden_dim=4, latent_dim=2, neighbors=keep), weights)
    top = torch.topk(weights.abs(), keep, dim=1).indices
    kept = torch.zeros_like(weights).scatter_(1, top, torch.gather(weights, 1, top))
    history = torch.rand(5, n)
    assert torch.allclose(pruned.item_item_scores(history), history @ kept, atol=1e-5)
    assert torch.allclose(dense.item_item_scores(history), history @ weights, atol=1e-5)


def test_similar_is_the_list_of_a_user_who_liked_one_movie():
    torch.manual_seed(2)
    n = 5
    ranker = Ranker(RankerConfig(n, hidden_dim=4, latent_dim=2, deep_weight=0.3), torch.randn(n, n))
    one_hot = torch.eye(n)[[1, 3]]
    assert torch.allclose(ranker.similar(np.array([1, 3])), ranker.scores(one_hot))


def test_trained_ranker_recommends_the_missing_movie_of_each_block():
    users, items, stars, missing = blocks()
    config = RankerConfig(12, hidden_dim=8, latent_dim=4, l2=1.0, deep_weight=0.3)
    ranker = refit_ranker(
        rated(users, items, stars), config, RankerTrainConfig(batch_size=16), epochs=20
    )
    x = history_matrix(rated(users, items, stars), config.low_weight)
    scores = ranker.scores(torch.from_numpy(x.toarray()))
    scores[torch.from_numpy(x.toarray()) > 0] = -torch.inf  # seen movies are never listed
    assert scores.argmax(1).tolist() == missing.tolist()


def test_item_item_part_is_the_closed_form(tmp_path):
    users, items, stars, _ = blocks()
    config = RankerConfig(12, hidden_dim=8, latent_dim=4, l2=5.0, low_weight=0.5)
    ranker = refit_ranker(rated(users, items, stars), config, RankerTrainConfig(), epochs=1)
    x = history_matrix(rated(users, items, stars), 0.5)
    expected = torch.from_numpy(ease_weights(x, 5.0).astype(np.float32))
    assert torch.allclose(ranker.neighbor_weights, expected, atol=1e-6)


@pytest.mark.parametrize("neighbors", [0, 4])
def test_artifact_round_trip_keeps_the_ranker(tmp_path, artifact_dir, neighbors):
    model, vocab, config = artifact.load(artifact_dir)
    torch.manual_seed(3)
    n = vocab.num_items
    ranker = Ranker(
        RankerConfig(n, hidden_dim=5, latent_dim=3, neighbors=neighbors, deep_weight=0.2),
        torch.randn(n, n),
    )
    out = artifact.save(tmp_path / "a", model, vocab, config, {}, ranker=ranker)
    loaded = artifact.load_ranker(out, artifact.load(out)[2])
    history = torch.rand(3, n)
    assert loaded.config == ranker.config
    assert torch.equal(loaded.scores(history), ranker.scores(history))


def test_artifact_without_a_ranker_loads_none(tmp_path, artifact_dir):
    model, vocab, config = artifact.load(artifact_dir)
    config = {k: v for k, v in config.items() if k != "ranker"}
    out = artifact.save(tmp_path / "b", model, vocab, config, {})
    assert artifact.load_ranker(out, artifact.load(out)[2]) is None


def test_deep_part_resumes_from_its_checkpoint_bit_for_bit(tmp_path):
    users, items, stars, _ = blocks()
    config = RankerConfig(12, hidden_dim=8, latent_dim=4, l2=1.0)
    x = history_matrix(rated(users, items, stars), config.low_weight)
    targets = history_matrix(rated(users, items, stars), config.target_low_weight)
    train_config = RankerTrainConfig(batch_size=16)

    def trained(epochs, checkpoint=None):
        torch.manual_seed(0)
        ranker = Ranker(config)
        history = train_deep(ranker, x, targets, train_config, epochs=epochs, checkpoint=checkpoint)
        return ranker, history

    straight, history = trained(4)
    path = tmp_path / "ranker.ckpt"
    trained(2, path)  # interrupted after two epochs
    resumed, resumed_history = trained(4, path)
    assert [r["loss"] for r in resumed_history] == [r["loss"] for r in history]
    for name, value in straight.dae.state_dict().items():
        assert torch.equal(value, resumed.dae.state_dict()[name]), name


def test_a_non_finite_loss_is_refused():
    users, items, stars, _ = blocks()
    config = RankerConfig(12, hidden_dim=8, latent_dim=4, l2=1.0)
    x = history_matrix(rated(users, items, stars), config.low_weight)
    ranker = Ranker(config)
    with torch.no_grad():
        ranker.dae.decoder.bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="ranker"):
        train_deep(ranker, x, x, RankerTrainConfig(), epochs=1)


@pytest.mark.parametrize("neighbors", [0, 3])
def test_large_catalogue_solves_the_item_item_part_on_its_most_rated_movies(neighbors):
    users, items, stars, _ = blocks()
    items = np.where(items == 11, 10, items)  # movie 11 now has no ratings: the least rated
    x = history_matrix(rated(users, items, stars), 0.6)
    weights, kept = fit_item_item(x, 5.0, max_items=11)
    counts = np.bincount(items, minlength=12)
    assert kept.tolist() == sorted(np.argsort(-counts, kind="stable")[:11].tolist())
    assert 11 not in kept.tolist() and weights.shape == (11, 11)
    ranker = Ranker(RankerConfig(12, hidden_dim=4, latent_dim=2, neighbors=neighbors))
    ranker.set_item_item(weights, kept)
    full = torch.zeros(12, 12)
    full[torch.from_numpy(kept)[:, None], torch.from_numpy(kept)[None, :]] = weights
    if neighbors:
        top = torch.topk(full.abs(), neighbors, dim=1).indices
        full = torch.zeros_like(full).scatter_(1, top, torch.gather(full, 1, top))
    history = torch.rand(4, 12)
    assert torch.allclose(ranker.item_item_scores(history), history @ full, atol=1e-5)


def test_scale_measurement_runs_on_a_tiny_catalogue():
    from pathlib import Path

    from tests.conftest import GENRES, synthetic_movies, synthetic_ratings
    from train.data import Dataset
    from train.ranker_scale import measure

    dataset = Dataset(
        "tiny", synthetic_ratings(), synthetic_movies(), GENRES, (1.0, 5.0), Path("unused")
    )
    out = measure(dataset, batches=2, l2=10.0)
    assert (out["users"], out["movies"], out["item_item_movies"]) == (40, 30, 30)
    assert out["steps_per_epoch"] == 1 and out["deep_steps_timed"] == 2
    assert out["peak_rss_gib"] > 0
