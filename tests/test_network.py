"""The served FactorModel and the training ItemAutoRec: shapes, range, consistency, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model import artifact, network
from model.network import FactorModel, FactorModelConfig
from tests.conftest import item_ratings, tiny_autorec
from train.data.interactions import Interactions
from train.data.prepared import Encoded, Prepared, encode
from train.fitting import autorec
from train.fitting.autorec import ItemRatings
from train.fitting.experiment import smallest_projection


def _factor_model(**overrides) -> FactorModel:
    torch.manual_seed(0)
    model = FactorModel(FactorModelConfig(num_users=5, num_items=7, code_dim=4, **overrides))
    # Scramble every weight far from its init so the checks below are not trivially true.
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 2)
    return model.eval()


def test_predictions_stay_in_the_rating_scale():
    model = _factor_model(min_rating=0.5, max_rating=5.0)
    out = model(torch.arange(5).repeat_interleave(7), torch.arange(7).repeat(5))
    assert out.shape == (35,)
    assert torch.all((out >= 0.5) & (out <= 5.0))
    assert out.std() > 0.1  # not collapsed to a constant
    assert torch.all(model.score_all(torch.arange(5)) >= 0.5)


def test_score_all_matches_forward():
    model = _factor_model()
    users = torch.tensor([4, 0, 2])
    all_scores = model.score_all(users)
    assert all_scores.shape == (3, 7)
    pairwise = model(users.repeat_interleave(7), torch.arange(7).repeat(3)).view(3, 7)
    assert torch.allclose(all_scores, pairwise, atol=1e-5)
    assert model.score_all(users[:0]).shape == (0, 7)


def test_catalogue_scores_follow_every_change_of_the_item_codes(tmp_path):
    """score_all reads a transposed copy of the codes; it must never serve stale ones."""
    model = _factor_model()
    users = torch.tensor([1, 3])

    def pairwise():
        return model(users.repeat_interleave(7), torch.arange(7).repeat(2)).view(2, 7)

    first = model.score_all(users)
    assert torch.allclose(first, pairwise(), atol=1e-5)
    with torch.no_grad():
        model.item_codes.mul_(-1.0)  # in place, as an optimizer step or copy_ does
    assert not torch.allclose(model.score_all(users), first, atol=1e-3)
    assert torch.allclose(model.score_all(users), pairwise(), atol=1e-5)
    model.item_codes = torch.nn.Parameter(torch.randn(7, 4))  # replaced outright
    assert torch.allclose(model.score_all(users), pairwise(), atol=1e-5)
    other = _factor_model()
    with torch.no_grad():
        other.item_codes.add_(1.0)
    model.load_state_dict(other.state_dict())
    assert torch.allclose(model.score_all(users), pairwise(), atol=1e-5)
    assert "_codes_by_column" not in "".join(model.state_dict())  # a cache, never saved


def test_item_ratings_batches_are_the_item_columns():
    ratings = ItemRatings(
        Interactions(
            user_idx=np.array([1, 3, 0, 3]),
            item_idx=np.array([2, 0, 2, 1]),
            rating=np.array([4.0, 5.0, 1.0, 2.0]),
            num_users=5,
            num_items=4,
        )
    )
    inputs, rows, users, values = ratings.batch(np.array([2, 3, 0]))
    dense = inputs.to_dense()
    expected = np.zeros((3, 5), np.float32)
    expected[0, 0], expected[0, 1], expected[2, 3] = 1.0, 4.0, 5.0  # item 3 has no ratings
    assert np.array_equal(dense.numpy(), expected)
    assert rows.tolist() == [0, 0, 2] and users.tolist() == [0, 1, 3]
    assert values.tolist() == [1.0, 4.0, 5.0]


def test_exported_model_predicts_what_the_autoencoder_decodes(ratings, vocab):
    data = encode(ratings, vocab)
    net, train = tiny_autorec(vocab, data), item_ratings(data, vocab)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    net.eval()
    idx = np.arange(vocab.num_items)
    inputs, rows, users, _ = train.batch(idx)
    with torch.no_grad():
        codes, _ = net.encode(inputs, torch.from_numpy(idx))
        decoded, _ = net.decode_at(codes, rows, users)
    served = net.export(train)
    lo, hi = net.config.min_rating, net.config.max_rating
    assert torch.allclose(served(users, rows), decoded.clamp(lo, hi), atol=1e-5)


def test_dense_and_sparse_decoding_agree_in_value_and_gradient(ratings, vocab, monkeypatch):
    """The decoder multiplies whole batches when they are dense enough and gathers the
    observed entries otherwise: the loss and every gradient must be the same either way."""
    data = encode(ratings, vocab)
    train = item_ratings(data, vocab)
    idx = np.arange(vocab.num_items)
    inputs, rows, users, _ = train.batch(idx)
    results = []
    for density in (0.0, 2.0):  # every batch dense / none dense
        monkeypatch.setattr(autorec, "DENSE_DECODE_DENSITY", density)
        net = tiny_autorec(vocab, data)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p, generator=torch.Generator().manual_seed(3)) * 0.1)
        pred, _ = net(inputs, torch.from_numpy(idx), rows, users)
        pred.pow(2).sum().backward()
        results.append((pred.detach(), [p.grad.clone() for p in net.parameters()]))
    (dense, dense_grads), (sparse, sparse_grads) = results
    assert torch.allclose(dense, sparse, atol=1e-5)
    for a, b in zip(dense_grads, sparse_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_local_kernels_switch_connections_off(ratings, vocab):
    net = tiny_autorec(vocab, encode(ratings, vocab))
    layer = net.encoder[0]
    with torch.no_grad():
        layer.row_vectors.zero_()
        layer.col_vectors.zero_()
        layer.col_vectors[0] += 2.0  # distance 2 from every row: kernel 0
    w, _ = layer.effective()
    assert torch.all(w[:, 0] == 0)
    assert torch.equal(w[:, 1:], layer.weight[:, 1:])  # kernel 1 where vectors coincide


def test_artifact_rebuilds_the_same_model(tmp_path, vocab):
    model = FactorModel(FactorModelConfig(vocab.num_users, vocab.num_items, code_dim=4))
    with torch.no_grad():
        model.user_vectors.normal_()
    artifact.save(tmp_path / "a", model.eval(), vocab, {"training": {}}, {"results": {}})
    loaded, loaded_vocab, meta = artifact.load(tmp_path / "a")
    users, items = torch.tensor([0, 3]), torch.tensor([2, 1])
    assert torch.equal(loaded(users, items), model(users, items))
    assert meta["model"]["code_dim"] == 4
    assert meta["provenance"]["torch"] == torch.__version__
    assert loaded_vocab.num_items == vocab.num_items


def _rank_limited(rank: int, code_dim: int = 12) -> FactorModel:
    """A model whose item codes span only ``rank`` of their ``code_dim`` dimensions."""
    config = FactorModelConfig(num_users=30, num_items=40, code_dim=code_dim, max_rating=50.0)
    out = FactorModel(config)
    torch.manual_seed(1)
    with torch.no_grad():
        out.user_vectors.normal_(0, 1)
        out.item_codes.copy_(torch.randn(40, rank) @ torch.randn(rank, code_dim))
        out.user_bias.normal_(0, 1)
        out.item_bias.normal_(0, 1)
        out.offset.fill_(25.0)
    return out.eval()


def _all_scores(model: FactorModel) -> torch.Tensor:
    return model.score_all(torch.arange(model.config.num_users))


def test_projection_keeps_predictions_when_the_codes_span_fewer_dimensions():
    model = _rank_limited(rank=5)
    projected = network.project(model, 5)
    assert projected.config.code_dim == 5
    assert torch.allclose(_all_scores(projected), _all_scores(model), atol=1e-4)
    # One dimension too few loses part of every prediction.
    assert (_all_scores(network.project(model, 4)) - _all_scores(model)).abs().max() > 0.1


def test_projected_vectors_are_an_orthonormal_change_of_basis():
    model = _rank_limited(rank=12)  # full rank: nothing may be lost
    projected = network.project(model, 12)
    assert torch.allclose(_all_scores(projected), _all_scores(model), atol=1e-4)
    # Orthonormal: lengths are kept, so a ridge penalty means the same on both.
    assert torch.allclose(projected.item_codes.norm(dim=1), model.item_codes.norm(dim=1), rtol=1e-4)


def test_projection_refuses_impossible_sizes():
    for rank in (0, 13):
        with pytest.raises(ValueError, match="rank"):
            network.project(_rank_limited(rank=5), rank)


def test_the_served_size_is_the_smallest_that_validation_allows(vocab):
    """16, 32, ... dimensions are tried in turn; the first within the tolerance is served,
    and the full model when none is."""
    model = _rank_limited(rank=5, code_dim=64)
    users, items = torch.arange(30).repeat_interleave(40), torch.arange(40).repeat(30)
    pairs = Encoded(users, items, model(users, items).detach() + 0.5)
    data = Prepared(vocab, pairs, pairs, pairs, rating_scale=(1.0, 50.0))
    served, info = smallest_projection(model, data, tolerance=1e-4)
    assert (info.code_dim, info.served_dim, served.config.code_dim) == (64, 16, 16)
    assert info.validation_rmse_served <= info.validation_rmse_full + 1e-4
    dense = _rank_limited(rank=64, code_dim=64)  # predicted exactly: any projection loses
    pairs = Encoded(users, items, dense(users, items).detach())
    data = Prepared(vocab, pairs, pairs, pairs, rating_scale=(1.0, 50.0))
    full, info = smallest_projection(dense, data, tolerance=1e-4)
    assert (info.served_dim, full.config.code_dim) == (64, 64)
