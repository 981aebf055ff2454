"""The rating network: a neural collaborative filter in the NeuMF family.

For user ``u`` and movie ``i`` (shapes in comments: B = batch, d = embedding_dim):

    p_u = E_user[u]                                   (B, d)
    q_i = E_item[i] + W_genre @ mean_genres(i)        (B, d)   genres help rarely rated movies
    z   = logit(mu) + b_u + b_i + <p_u, q_i> + MLP([p_u, q_i, p_u * q_i])
    r   = lo + (hi - lo) * sigmoid(z)                          always inside the rating scale

The dot product is the matrix-factorization part (strong on its own); the MLP adds the
non-linear interactions. The checkpoint stores :class:`ModelConfig`, so loading rebuilds the
network without sizes written anywhere else.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn


@dataclass
class ModelConfig:
    """Sizes and range of :class:`NeuralCF`; stored in every checkpoint."""

    num_users: int
    num_items: int
    num_genres: int
    embedding_dim: int = 64  # 32-128 all work on MovieLens; 64 is a good accuracy/speed point
    hidden_dims: list[int] = field(default_factory=lambda: [64, 32])  # MLP widths after the input
    dropout: float = 0.2  # on MLP activations; MovieLens is small enough to overfit fast
    min_rating: float = 1.0
    max_rating: float = 5.0
    global_mean: float = 3.5  # initial bias, so training starts at the mean rating

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        return cls(**values)


class NeuralCF(nn.Module):
    """Embeddings + biases + genres feeding a dot product and an MLP; outputs ratings.

    Parameters
    ----------
    config : ModelConfig
    item_genres : torch.Tensor, shape (num_items, num_genres), optional
        Multi-hot genre flags; kept as a buffer so the weights file carries them.
    """

    def __init__(self, config: ModelConfig, item_genres: torch.Tensor | None = None):
        super().__init__()
        self.config = config
        d = config.embedding_dim
        self.user_embedding = nn.Embedding(config.num_users, d)
        self.item_embedding = nn.Embedding(config.num_items, d)
        self.user_bias = nn.Embedding(config.num_users, 1)
        self.item_bias = nn.Embedding(config.num_items, 1)
        self.genre_projection = nn.Linear(config.num_genres, d, bias=False)
        if item_genres is None:
            item_genres = torch.zeros(config.num_items, config.num_genres)
        genres = item_genres.float()
        # Mean over a movie's genres, so a movie with many genres is not pushed further out.
        genres = genres / genres.sum(dim=1, keepdim=True).clamp(min=1.0)
        self.register_buffer("item_genres", genres)

        widths = [3 * d, *config.hidden_dims]
        self.first = nn.Linear(widths[0], widths[1])
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths[1:-1], widths[2:]):
            layers += [nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(w_in, w_out)]
        layers += [nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(widths[-1], 1)]
        self.rest = nn.Sequential(*layers)

        span = config.max_rating - config.min_rating
        p = min(max((config.global_mean - config.min_rating) / span, 1e-3), 1 - 1e-3)
        self.offset = nn.Parameter(torch.tensor(math.log(p / (1 - p))))
        self._init_weights()

    def _init_weights(self) -> None:
        # Small embeddings so the model starts near the global mean and regularization matters.
        for emb in (self.user_embedding, self.item_embedding):
            nn.init.normal_(emb.weight, std=0.01)
        for bias in (self.user_bias, self.item_bias):
            nn.init.zeros_(bias.weight)
        nn.init.normal_(self.genre_projection.weight, std=0.01)
        nn.init.zeros_(self.rest[-1].weight)
        nn.init.zeros_(self.rest[-1].bias)

    def item_vectors(self, item_idx: torch.Tensor | None = None) -> torch.Tensor:
        """q_i for ``item_idx`` (all items when None): shape (*item_idx.shape, d)."""
        genres = self.item_genres if item_idx is None else self.item_genres[item_idx]
        emb = self.item_embedding.weight if item_idx is None else self.item_embedding(item_idx)
        return emb + self.genre_projection(genres)

    def _to_rating(self, logit: torch.Tensor) -> torch.Tensor:
        lo, hi = self.config.min_rating, self.config.max_rating
        return lo + (hi - lo) * torch.sigmoid(logit)

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Predicted ratings for pairs: ``user_idx`` (B,), ``item_idx`` (B,) -> (B,)."""
        p = self.user_embedding(user_idx)  # (B, d)
        q = self.item_vectors(item_idx)  # (B, d)
        mlp = self.rest(self.first(torch.cat([p, q, p * q], dim=1))).squeeze(1)  # (B,)
        logit = (
            self.offset
            + self.user_bias(user_idx).squeeze(1)
            + self.item_bias(item_idx).squeeze(1)
            + (p * q).sum(1)
            + mlp
        )
        return self._to_rating(logit)

    def regularization(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Mean squared norm of the batch's embeddings and biases (per-sample L2, as in MF)."""
        p = self.user_embedding(user_idx)
        q = self.item_vectors(item_idx)
        b = self.user_bias(user_idx).squeeze(1) ** 2 + self.item_bias(item_idx).squeeze(1) ** 2
        return ((p**2).sum(1) + (q**2).sum(1) + b).mean()

    @torch.no_grad()
    def score_all(self, user_idx: torch.Tensor, max_elements: int = 1 << 22) -> torch.Tensor:
        """Predicted ratings of every item for each user: (B,) -> (B, num_items).

        The MLP's first layer over ``[p, q, p * q]`` is rewritten per user as
        ``q @ (W_item^T + p^T * W_both^T) + (p @ W_user^T + b)``: one (N, d) x (d, h) product
        per user instead of separate item and interaction parts. Users go in chunks whose
        (chunk, N, h) hidden layer stays under ``max_elements`` floats, so a batch over a large
        catalogue does not stream hundreds of MB through memory.
        """
        d, h = self.config.embedding_dim, self.first.out_features
        q = self.item_vectors()  # (N, d)
        w_user, w_item, w_both = self.first.weight.split(d, dim=1)  # each (h, d)
        step = max(1, max_elements // (len(q) * h))
        out = []
        for users in user_idx.split(step):
            p = self.user_embedding(users)  # (b, d)
            hidden = torch.matmul(q, w_item.T + p.unsqueeze(2) * w_both.T)  # (b, N, h)
            hidden += (p @ w_user.T + self.first.bias).unsqueeze(1)
            mlp = self.rest(hidden).squeeze(2)  # (b, N)
            logit = self.offset + self.user_bias(users) + self.item_bias.weight.T + p @ q.T + mlp
            out.append(self._to_rating(logit))
        return torch.cat(out) if out else torch.empty(0, len(q))
