"""Network: shapes, the rating range, and score_all agreeing with the pairwise forward pass."""

from __future__ import annotations

import torch

from model import artifact
from model.network import ModelConfig, NeuralCF


def _model(**overrides) -> NeuralCF:
    config = ModelConfig(
        num_users=5, num_items=7, num_genres=3, embedding_dim=4, hidden_dims=[6, 3], **overrides
    )
    torch.manual_seed(0)
    genres = torch.tensor(
        [[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1]]
    )
    model = NeuralCF(config, genres)
    # Scramble every weight far from its init so the checks below are not trivially true.
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 3)
    return model.eval()


def test_forward_shape_and_range():
    model = _model(min_rating=0.5, max_rating=5.0)
    users = torch.arange(5).repeat_interleave(7)
    items = torch.arange(7).repeat(5)
    out = model(users, items)
    assert out.shape == (35,)
    assert torch.all((out >= 0.5) & (out <= 5.0))
    assert out.std() > 0.1  # not collapsed to a constant


def test_starts_at_the_global_mean():
    config = ModelConfig(num_users=3, num_items=4, num_genres=2, global_mean=3.7)
    model = NeuralCF(config).eval()
    out = model(torch.tensor([0, 1, 2]), torch.tensor([3, 2, 1]))
    assert torch.allclose(out, torch.full((3,), 3.7), atol=0.01)


def test_score_all_matches_forward():
    model = _model()
    users = torch.tensor([4, 0, 2])
    all_scores = model.score_all(users)
    assert all_scores.shape == (3, 7)
    pairwise = model(users.repeat_interleave(7), torch.arange(7).repeat(3)).view(3, 7)
    assert torch.allclose(all_scores, pairwise, atol=1e-5)
    # Users scored in chunks (here one at a time) give the same scores.
    assert torch.allclose(model.score_all(users, max_elements=1), all_scores, atol=1e-6)
    assert model.score_all(users[:0]).shape == (0, 7)


def test_artifact_rebuilds_the_same_model(tmp_path, vocab):
    config = ModelConfig(
        num_users=vocab.num_users,
        num_items=vocab.num_items,
        num_genres=3,
        embedding_dim=4,
        hidden_dims=[5],
    )
    model = NeuralCF(config, torch.from_numpy(vocab.genres))
    with torch.no_grad():
        model.user_embedding.weight.normal_()
    artifact.save(tmp_path / "a", model, vocab, {"training": {}}, {"results": {}})
    loaded, loaded_vocab, meta = artifact.load(tmp_path / "a")
    users, items = torch.tensor([0, 3]), torch.tensor([2, 1])
    assert torch.equal(loaded(users, items), model.eval()(users, items))
    assert meta["model"]["embedding_dim"] == 4
    assert meta["provenance"]["torch"] == torch.__version__
    assert loaded_vocab.num_items == vocab.num_items
