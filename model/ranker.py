"""movierec's ranking model: top-K lists learned from who rated what, and how they rated it.

A user is given by their ratings. Their history row ``x`` holds 1 for a rating of 4 or more and
``low_weight`` for a lower one: a low rating is still evidence of interest, but weaker evidence
of the liking that a good recommendation means. Three parts score every movie:

- **item-item**: ``x B``, a zero-diagonal item-item matrix in closed form, the ridge solution of
  Steck's EASE (2019) on the rating-aware history matrix. At a large catalogue it is pruned to
  each movie's ``neighbors`` strongest weights, so it scales with the number of movies.
- **deep**: a denoising user autoencoder with a multinomial likelihood (Mult-DAE, Liang et al.
  2018): ``log softmax(decoder(encoder(dropout(x / |x|))))``, trained on rating-aware targets.
- **rating**: the rating model's predicted stars ``r_hat(u, i)`` (:class:`FactorModel`).

The list score is ``z(x B) + deep_weight * z(deep) + rating_weight * r_hat``, where ``z``
divides a user's row by its standard deviation over the catalogue, so that the two weights mean
the same at any catalogue size. Both weights are chosen on validation ranking
(:mod:`train.fitting.ranker_training`). Scores rank movies within one list; they are not ratings.

The same forward pass answers a known user (from their training history), a new user (from the
ratings in the request) and "more like this movie" (a history of that one movie, liked).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.network import TransposedCopy
from model.novelty import DEFAULT_STRENGTHS

# Ratings at or above this count as liked (the relevance threshold of train.evaluation.ranking).
LIKED = 4.0


@dataclass
class RankerConfig:
    """Sizes and settings of :class:`Ranker`; stored in every artifact's config.json."""

    num_items: int
    hidden_dim: int = 600  # Mult-DAE's encoder width (Liang et al. 2018)
    latent_dim: int = 200  # the user code; the decoder is one linear layer from it
    dropout: float = 0.5  # share of a history hidden from the encoder per training step
    low_weight: float = 0.6  # history entry of a rating below LIKED (input side)
    target_low_weight: float = 0.3  # the same on the training target of the deep part
    l2: float = 800.0  # λ of the item-item part, chosen on validation
    neighbors: int = 0  # item-item weights kept per movie; 0 keeps the dense matrix
    deep_weight: float = 0.0  # weight of the deep part's z-scores, chosen on validation
    rating_weight: float = 0.0  # weight of the predicted rating, chosen on validation
    # Popularity penalty at each of model.novelty.LEVELS, calibrated on validation; the
    # default is for artifacts written before they were.
    novelty_strengths: list[float] = field(default_factory=lambda: list(DEFAULT_STRENGTHS))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> RankerConfig:
        return cls(**values)


class UserDAE(nn.Module):
    """Mult-DAE: history (B, N) -> logits over the catalogue (B, N)."""

    def __init__(self, num_items: int, hidden_dim: int, latent_dim: int, dropout: float):
        super().__init__()
        self.dropout = dropout
        first, last = nn.Linear(num_items, hidden_dim), nn.Linear(hidden_dim, latent_dim)
        self.encoder = nn.Sequential(first, nn.Tanh(), last)
        self.decoder = nn.Linear(latent_dim, num_items)
        for layer in (first, last, self.decoder):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.normal_(layer.bias, std=1e-3)
        self._decoder_by_column = TransposedCopy()

    def forward(self, history: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, N). In training, ``keep`` (B, N) bool says which history entries the
        encoder sees (drawn by the caller, so that DDP ranks share one draw per step); None
        draws the input dropout here."""
        x = F.normalize(history, dim=1)
        if self.training:
            if keep is None:
                return self.decoder(self.encoder(F.dropout(x, self.dropout)))
            return self.decoder(self.encoder(x * keep / (1 - self.dropout)))
        # Serving: a history holds a few hundred of the catalogue's movies, so the first layer
        # reads only their columns (nnz x hidden instead of N x hidden per user).
        first = self.encoder[0]
        hidden = torch.sparse.mm(x.to_sparse(), first.weight.T) + first.bias
        latent = self.encoder[2](self.encoder[1](hidden))
        # The decoder reads its whole (N, latent) weight per call: column by column is faster.
        return torch.addmm(self.decoder.bias, latent, self._decoder_by_column(self.decoder.weight))


def scale_rows(scores: torch.Tensor) -> torch.Tensor:
    """Each row divided by its standard deviation over the catalogue (a flat row stays flat)."""
    return scores / scores.std(dim=1, keepdim=True).clamp_min(1e-12)


class Ranker(nn.Module):
    """The ranking model: item-item part, deep part and the weights that blend them.

    Parameters
    ----------
    config : RankerConfig
    item_item : torch.Tensor, optional
        The dense item-item matrix B (N, N), row j = what having liked movie j adds to every
        movie. Pruned (``config.neighbors`` > 0) it is kept sparse.
    """

    # Buffers (registered in __init__), declared so that they read as tensors, not Modules.
    neighbor_weights: torch.Tensor
    neighbor_items: torch.Tensor

    def __init__(self, config: RankerConfig, item_item: torch.Tensor | None = None):
        super().__init__()
        self.config = config
        n = config.num_items
        self.dae = UserDAE(n, config.hidden_dim, config.latent_dim, config.dropout)
        self.dense = not 0 < config.neighbors < n
        # Dense: B itself (N, N). Pruned: row j's `neighbors` largest weights and their movies,
        # (N, neighbors) each.
        width = n if self.dense else config.neighbors
        self.register_buffer("neighbor_weights", torch.zeros(n, width))
        self.register_buffer(
            "neighbor_items", torch.zeros(0 if self.dense else n, width, dtype=torch.int32)
        )
        if item_item is not None:
            self.set_item_item(item_item)

    @torch.no_grad()
    def set_item_item(self, weights: torch.Tensor, items: np.ndarray | None = None) -> None:
        """Keep the item-item matrix, pruned to each row's strongest ``config.neighbors``.

        ``weights`` is (N, N); or (M, M) between the movies ``items`` (M,) only, when the
        closed form was solved on part of a large catalogue: the other movies' rows and
        columns are then zero."""
        weights = weights.float()
        movies = None if items is None else torch.as_tensor(np.asarray(items, dtype=np.int64))
        if self.dense:
            if movies is None:
                self.neighbor_weights.copy_(weights)
            else:
                self.neighbor_weights.zero_()
                self.neighbor_weights[movies[:, None], movies[None, :]] = weights
            return
        width = min(self.neighbor_items.shape[1], weights.shape[1])
        top = torch.topk(weights.abs(), width, dim=1).indices  # (M, width), within `weights`
        rows = slice(None) if movies is None else movies
        self.neighbor_items.zero_()
        self.neighbor_weights.zero_()
        self.neighbor_items[rows, :width] = (top if movies is None else movies[top]).int()
        self.neighbor_weights[rows, :width] = torch.gather(weights, 1, top)

    # ------------------------------------------------------------------ histories

    def history_rows(
        self, rows: np.ndarray, items: np.ndarray, stars: np.ndarray, batch: int
    ) -> torch.Tensor:
        """Rating-aware history rows (batch, N) from flat arrays: user ``rows[j]`` gave movie
        ``items[j]`` ``stars[j]`` stars."""
        values = np.where(np.asarray(stars) >= LIKED, 1.0, self.config.low_weight)
        out = torch.zeros(batch, self.config.num_items)
        out[
            torch.as_tensor(np.asarray(rows, dtype=np.int64)),
            torch.as_tensor(np.asarray(items, dtype=np.int64)),
        ] = torch.from_numpy(values.astype(np.float32))
        return out

    def histories(
        self, item_idx: Sequence[np.ndarray], ratings: Sequence[np.ndarray]
    ) -> torch.Tensor:
        """Rating-aware history rows (B, N) of users given by the movies they rated."""
        lengths = [len(i) for i in item_idx]
        rows = np.repeat(np.arange(len(lengths)), lengths)
        items = np.concatenate(
            [np.asarray(i, np.int64) for i in item_idx] or [np.zeros(0, np.int64)]
        )
        stars = np.concatenate(
            [np.asarray(r, np.float32) for r in ratings] or [np.zeros(0, np.float32)]
        )
        return self.history_rows(rows, items, stars, len(lengths))

    # ------------------------------------------------------------------ scoring

    @torch.no_grad()
    def item_item_scores(self, history: torch.Tensor) -> torch.Tensor:
        """``x B``: (B, N) -> (B, N), reading only the rows of B of the movies in ``x``
        (nnz x N dense, nnz x neighbors pruned) rather than all of B."""
        rows, movies = history.nonzero(as_tuple=True)
        values = history[rows, movies]
        if self.dense:
            sparse = torch.sparse_coo_tensor(  # nonzero() gives sorted, unique indices
                torch.stack([rows, movies]),
                values,
                history.shape,
                is_coalesced=True,
                check_invariants=False,
            )
            return torch.sparse.mm(sparse, self.neighbor_weights)
        targets = self.neighbor_items[movies].long()  # (nnz, width)
        out = torch.zeros_like(history)
        out.index_put_(
            (rows[:, None].expand_as(targets), targets),
            self.neighbor_weights[movies] * values[:, None],
            accumulate=True,
        )
        return out

    @torch.no_grad()
    def deep_scores(self, history: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the deep part: (B, N) -> (B, N)."""
        self.dae.eval()
        return F.log_softmax(self.dae(history), dim=1)

    @torch.no_grad()
    def scores(self, history: torch.Tensor, ratings: torch.Tensor | None = None) -> torch.Tensor:
        """List scores (B, N) of users with histories (B, N) and predicted ratings (B, N)
        (None leaves the rating part out, as for "more like this movie")."""
        c = self.config
        out = scale_rows(self.item_item_scores(history))
        if c.deep_weight:
            out += c.deep_weight * scale_rows(self.deep_scores(history))
        if c.rating_weight and ratings is not None:
            out += c.rating_weight * ratings.to(out.dtype)
        return out

    @torch.no_grad()
    def contributions(
        self, history_items: np.ndarray, history_values: np.ndarray, entries: np.ndarray
    ) -> np.ndarray:
        """What each movie of one history adds to each entry's item-item score: ``x_j B_ji``
        for history movie ``j`` (``history_items``, weights ``history_values``: 1 liked,
        ``low_weight`` otherwise) and entry ``i`` of ``entries``; (h,) (h,) (k,) -> (h, k).

        The item-item score of entry ``i`` is exactly the column sum (before the list's
        division by its standard deviation, the same for every entry of the list), so these
        are the terms of the score, not a similarity guessed beside it."""
        history = torch.as_tensor(np.asarray(history_items, dtype=np.int64))
        values = torch.as_tensor(np.asarray(history_values, dtype=np.float32))
        targets = np.asarray(entries, dtype=np.int64)
        if self.dense:
            weights = self.neighbor_weights[history][:, torch.as_tensor(targets)]  # (h, k)
            return (weights * values[:, None]).numpy()
        # Pruned: row j keeps its strongest `neighbors` weights; B_ji is the weight at the
        # place where movie i sits in row j, 0 where it was pruned away.
        neighbors = self.neighbor_items[history].numpy()  # (h, width)
        order = np.argsort(targets)
        at = np.searchsorted(targets[order], neighbors).clip(0, len(targets) - 1)
        hit = targets[order][at] == neighbors  # (h, width): a kept weight towards an entry
        rows, places = np.nonzero(hit)
        out = np.zeros((len(history), len(targets)), dtype=np.float32)
        kept = self.neighbor_weights[history].numpy()
        np.add.at(out, (rows, order[at[rows, places]]), kept[rows, places])
        return out * values.numpy()[:, None]

    @torch.no_grad()
    def similar(self, item_idx: np.ndarray) -> torch.Tensor:
        """Scores (B, N) of every movie for a user who liked only ``item_idx[b]``."""
        items = torch.as_tensor(np.asarray(item_idx, dtype=np.int64))
        history = torch.zeros(len(items), self.config.num_items)
        history[torch.arange(len(items)), items] = 1.0
        return self.scores(history)
