"""Fold-in of new users: planted users are recovered, trained users are matched, and the
batched solve does not depend on batch company (which also checks its two forms agree)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.foldin import UserPrior, fold_in
from model.network import FactorModel, FactorModelConfig
from model.scoring import Scorer
from train.evaluation.metrics import rmse


def _planted(num_users: int = 300, num_items: int = 60, dim: int = 4, seed: int = 0):
    """A FactorModel whose users come from a known Gaussian population around a non-zero
    mean (like the autoencoder's), with an offset and item biases, and a wide scale so that
    clamping never hides an error."""
    gen = torch.Generator().manual_seed(seed)
    model = FactorModel(FactorModelConfig(num_users, num_items, dim, -100.0, 100.0))
    with torch.no_grad():
        model.item_codes.copy_(torch.rand(num_items, dim, generator=gen))
        model.user_vectors.copy_(0.5 + torch.randn(num_users, dim, generator=gen))
        model.user_bias.copy_(0.3 * torch.randn(num_users, generator=gen))
        model.item_bias.copy_(0.5 * torch.randn(num_items, generator=gen))
        model.offset.fill_(3.0)
    return model.eval()


def test_a_planted_user_is_recovered_from_many_ratings():
    model = _planted()
    prior = UserPrior.from_model(model)
    items = np.arange(60)
    truth = model(torch.full((60,), 7), torch.from_numpy(items)).detach().numpy()
    noisy = truth + np.random.default_rng(0).normal(0, 0.1, 60)
    vectors, biases = fold_in(model, prior, [items], [noisy], ridge=0.01)
    assert torch.allclose(vectors[0], model.user_vectors[7].detach(), atol=0.1)
    assert abs(biases[0].item() - model.user_bias[7].item()) < 0.1
    predicted = model.predict_vectors(
        vectors, biases, torch.zeros(60, dtype=torch.long), torch.from_numpy(items)
    ).numpy()
    assert rmse(predicted, truth) < 0.05


def test_without_ratings_a_new_user_is_the_average_user():
    model = _planted()
    prior = UserPrior.from_model(model)
    vectors, biases = fold_in(model, prior, [np.array([], int)], [np.array([])])
    assert torch.allclose(vectors[0].double(), model.user_vectors.detach().double().mean(0))
    assert float(biases[0]) == pytest.approx(float(model.user_bias.detach().mean()), abs=1e-6)


def test_answers_do_not_depend_on_batch_company():
    """A user with 3 ratings alone is solved in the dual (3 x 3) form; beside a user with 9
    ratings (more than the code size + 1) the batch uses the primal (5 x 5) form."""
    model = _planted()
    prior = UserPrior.from_model(model)
    rng = np.random.default_rng(1)
    small_items, big_items = np.array([4, 9, 30]), rng.choice(60, 9, replace=False)
    small, big = np.array([4.0, 2.0, 5.0]), rng.uniform(1, 5, 9)
    alone_v, alone_b = fold_in(model, prior, [small_items], [small])
    both_v, both_b = fold_in(model, prior, [big_items, small_items], [big, small])
    assert torch.allclose(alone_v[0], both_v[1], atol=1e-5)
    assert float(alone_b[0]) == pytest.approx(float(both_b[1]), abs=1e-5)


def test_fold_in_of_a_trained_user_predicts_their_ratings_about_as_well(artifact_dir, ratings):
    scorer = Scorer.from_artifact(artifact_dir)
    vocab = scorer.vocab
    users = vocab.user_index(ratings["user_id"].to_numpy())
    items = vocab.item_index(ratings["movie_id"].to_numpy())
    values = ratings["rating"].to_numpy(np.float64)
    per_user = [np.flatnonzero(users == u) for u in range(vocab.num_users)]
    vectors, biases = scorer.fold_in([items[j] for j in per_user], [values[j] for j in per_user])
    folded = scorer.predict_vectors(vectors, biases, users, items)
    trained = scorer.predict_indices(users, items)
    assert rmse(folded, values) <= 1.05 * rmse(trained, values)


@pytest.mark.parametrize(
    "args,message",
    [
        (([np.array([1])], [np.array([4.0])], 0.0), "ridge"),
        (([np.array([1])], [], 1.0), "rating lists"),
        (([np.array([1, 2])], [np.array([4.0])], 1.0), "as many ratings"),
    ],
)
def test_bad_arguments_are_refused(args, message):
    model = _planted()
    with pytest.raises(ValueError, match=message):
        fold_in(model, UserPrior.from_model(model), *args)


def test_the_prior_is_taken_over_the_users_with_many_ratings():
    from model.foldin import PRIOR_MIN_RATINGS, PRIOR_MIN_USERS, prior_users

    many = np.full(PRIOR_MIN_USERS + 50, PRIOR_MIN_RATINGS)
    counts = np.concatenate([many, np.arange(PRIOR_MIN_RATINGS), [0, 0]])
    assert prior_users(counts).tolist() == list(range(len(many)))
    # Too few such users: the PRIOR_MIN_USERS with the most ratings (ties included).
    top = PRIOR_MIN_RATINGS + PRIOR_MIN_USERS // 2  # only PRIOR_MIN_USERS / 2 + 1 have enough
    small = np.concatenate([np.arange(1, top + 1), [0]])
    chosen = prior_users(small)
    assert len(chosen) == PRIOR_MIN_USERS and small[chosen].min() == top - PRIOR_MIN_USERS + 1
    # Never a user without ratings; every user when fewer than two have any.
    assert prior_users(np.array([5, 0, 3, 0])).tolist() == [0, 2]
    assert prior_users(np.array([5, 0, 0])) is None
