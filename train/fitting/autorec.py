"""The training model: an item-based autoencoder with local kernels (I-AutoRec + Sparse FC ideas).

Each movie ``i`` is represented by the column of ratings it received, ``r_i`` (one entry per
user, mostly missing). An encoder maps it, plus the movie's genres, to a code ``h_i``; a
decoder maps the code back to one predicted rating per user:

    h_i     = sigmoid(... sigmoid(r_i @ W_1' + genres_i @ G + b_1) ... @ W_L' + b_L)   (k,)
    r_hat_ui = h_i . v_u' + c_u

Only observed ratings count in the loss, so ``v_u`` is a user vector and ``c_u`` a user bias:
decoding is a factorization whose item side was *computed* from the item's ratings. Weights are
masked by local kernels, ``W' = W * relu(1 - |a_row - b_col|^2)`` with learned low-dimensional
``a``, ``b``, which switches most connections off and regularizes strongly (Muller et al.,
"Kernelized synaptic weight matrices", 2018; Han et al., GLocal-K, 2021).

After training, :meth:`ItemAutoRec.export` computes every item code once and returns a
:class:`model.network.FactorModel`: serving never runs the encoder, top-K is one matrix product,
and a new user's vector is a ridge regression on the codes of the movies they rated.

Inputs are sparse (an item's column is a sparse row of a COO tensor) and the loss is evaluated
only at observed entries, so an epoch costs O(ratings x code size), not O(items x users).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import cast

import numpy as np
import torch
from torch import nn

from model.network import FactorModel, FactorModelConfig
from train.data.interactions import Interactions


@dataclass
class AutoRecConfig:
    """Sizes of :class:`ItemAutoRec`. ``hidden_dims`` (the last is the code size) and
    ``kernel_dim`` (of the local-kernel vectors; 0 = plain dense weights) come from a preset
    (:data:`train.fitting.settings.PRESETS`)."""

    num_users: int
    num_items: int
    num_genres: int
    hidden_dims: list[int]
    kernel_dim: int
    min_rating: float = 1.0
    max_rating: float = 5.0
    global_mean: float = 3.5  # initial user bias

    def to_dict(self) -> dict:
        return asdict(self)


class KernelWeight(nn.Module):
    """A weight matrix ``(n_in, n_out)`` masked by a local kernel between learned vectors."""

    def __init__(self, n_in: int, n_out: int, kernel_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) / math.sqrt(n_in))
        self.kernel_dim = kernel_dim
        if kernel_dim:
            # Near-zero vectors: every kernel value starts near 1 (a dense layer); training
            # pushes pairs apart and prunes connections.
            self.row_vectors = nn.Parameter(torch.rand(n_in, kernel_dim) * 1e-3)
            self.col_vectors = nn.Parameter(torch.rand(n_out, kernel_dim) * 1e-3)

    def kernel(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Kernel values for all rows (or ``rows``): shape (n_rows, n_out), in [0, 1]."""
        a = self.row_vectors if rows is None else self.row_vectors[rows]
        b = self.col_vectors
        # |a - b|^2 expanded: one small matrix product, much cheaper to differentiate than cdist.
        squared = a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2 * a @ b.T
        return (1 - squared).clamp(min=0)

    def effective(self, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W', penalty)``: the masked weights (all rows or ``rows``) and their L2 + kernel
        penalty terms ``(|W'|^2, |K|^2)`` summed, unweighted, as a (2,) tensor."""
        w = self.weight if rows is None else self.weight[rows]
        if not self.kernel_dim:
            return w, torch.stack([w.pow(2).sum(), torch.zeros((), device=w.device)])
        k = self.kernel(rows)
        w = w * k
        return w, torch.stack([w.pow(2).sum(), k.pow(2).sum()])


# Share of a batch's (item, user) entries that must be observed for the decoder to compute
# the batch's full (B, num_users) output with one matrix product rather than one dot product
# per observed entry: both give the same predictions.
DENSE_DECODE_DENSITY = 0.01


class ItemAutoRec(nn.Module):
    """Item-based autoencoder with local kernels and genre input; see the module docstring.

    Parameters
    ----------
    config : AutoRecConfig
    item_genres : torch.Tensor, shape (num_items, num_genres), optional
    """

    item_genres: torch.Tensor  # (num_items, num_genres) float, a buffer

    def __init__(self, config: AutoRecConfig, item_genres: torch.Tensor | None = None):
        super().__init__()
        self.config = config
        dims = [config.num_users, *config.hidden_dims]
        self.encoder = nn.ModuleList(
            KernelWeight(a, b, config.kernel_dim) for a, b in zip(dims[:-1], dims[1:])
        )
        self.encoder_bias = nn.ParameterList(nn.Parameter(torch.zeros(d)) for d in dims[1:])
        self.genre_weight = nn.Parameter(torch.zeros(config.num_genres, dims[1]))
        self.decoder = KernelWeight(config.num_users, dims[-1], config.kernel_dim)
        self.user_bias = nn.Parameter(torch.full((config.num_users,), config.global_mean))
        if item_genres is None:
            item_genres = torch.zeros(config.num_items, config.num_genres)
        self.register_buffer("item_genres", item_genres.float())

    def encode(self, inputs: torch.Tensor, item_idx: torch.Tensor) -> tuple[torch.Tensor, list]:
        """Item codes from sparse rating columns: ``inputs`` (B, num_users) sparse COO,
        ``item_idx`` (B,) -> codes (B, k) and the encoder's penalty terms."""
        penalties = []
        # nn.ModuleList indexes to nn.Module: every entry is a KernelWeight (see __init__).
        w, p = cast(KernelWeight, self.encoder[0]).effective()
        penalties.append(p)
        x = torch.sparse.mm(inputs, w) + self.item_genres[item_idx] @ self.genre_weight
        x = torch.sigmoid(x + self.encoder_bias[0])  # (B, h_1)
        for layer, bias in zip(self.encoder[1:], self.encoder_bias[1:]):
            w, p = cast(KernelWeight, layer).effective()
            penalties.append(p)
            x = torch.sigmoid(x @ w + bias)  # (B, h_l)
        return x, penalties

    def decode_at(self, codes: torch.Tensor, rows: torch.Tensor, users: torch.Tensor):
        """Predicted ratings at given entries: ``codes`` (B, k); ``rows`` (E,) index into the
        batch, ``users`` (E,) user indices -> (E,) ratings and the decoder's penalty terms.

        The penalty covers the whole decoder, not only the batch's users, so every step
        regularizes the same objective."""
        w_all, penalty = self.decoder.effective()
        if len(rows) >= DENSE_DECODE_DENSITY * codes.shape[0] * w_all.shape[0]:
            # Dense enough (ML-100K, ML-1M: 4-6% of entries observed): one matrix product for
            # the whole batch beats gathering an (E, k) copy of user vectors and scattering
            # its gradient back, ~3x faster per step on ML-1M.
            pred = (codes @ w_all.T)[rows, users]  # (B, num_users) -> (E,)
        else:  # sparse (ML-20M/25M: well under 1%): only the observed entries
            pred = (codes[rows] * w_all[users]).sum(1)
        return pred + self.user_bias[users], penalty

    def forward(
        self, inputs: torch.Tensor, item_idx: torch.Tensor, rows: torch.Tensor, users: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training step's predictions at observed entries, and the penalty terms
        ``(|W'|^2, |K|^2, |G|^2)`` of the whole network as a (3,) tensor."""
        codes, penalties = self.encode(inputs, item_idx)
        pred, decoder_penalty = self.decode_at(codes, rows, users)
        penalty = torch.stack([*penalties, decoder_penalty]).sum(0)
        return pred, torch.cat([penalty, self.genre_weight.pow(2).sum().reshape(1)])

    @torch.no_grad()
    def export(self, ratings: ItemRatings, batch_size: int = 1024) -> FactorModel:
        """The served form: every item's code, computed once from the training ``ratings``,
        and the decoder's user vectors and biases."""
        self.eval()
        codes = []
        device = self.user_bias.device
        for start in range(0, self.config.num_items, batch_size):
            idx = np.arange(start, min(start + batch_size, self.config.num_items))
            inputs, *_ = ratings.batch(idx)
            codes.append(self.encode(inputs.to(device), torch.from_numpy(idx).to(device))[0])
        user_vectors, _ = self.decoder.effective()
        config = FactorModelConfig(
            num_users=self.config.num_users,
            num_items=self.config.num_items,
            code_dim=self.config.hidden_dims[-1],
            min_rating=self.config.min_rating,
            max_rating=self.config.max_rating,
        )
        model = FactorModel(config)
        model.item_codes.copy_(torch.cat(codes).cpu())
        model.user_vectors.copy_(user_vectors.cpu())
        model.user_bias.copy_(self.user_bias.cpu())
        return model.eval()


class ItemRatings:
    """Training ratings grouped by item (CSR rows), served in item batches as sparse tensors.

    Parameters
    ----------
    ratings : Interactions
        The training ratings.
    """

    def __init__(self, ratings: Interactions):
        item_idx, user_idx = ratings.item_idx, ratings.user_idx
        num_items, num_users = ratings.num_items, ratings.num_users
        order = np.lexsort((user_idx, item_idx))
        self.users = np.asarray(user_idx, dtype=np.int64)[order]
        self.values = np.asarray(ratings.rating, dtype=np.float32)[order]
        counts = np.bincount(item_idx, minlength=num_items)
        self.indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.num_items, self.num_users = num_items, num_users

    def __len__(self) -> int:
        return len(self.values)

    def batch(self, item_idx: np.ndarray):
        """Rows ``item_idx`` as ``(inputs, rows, users, values)``: ``inputs`` a sparse COO
        (B, num_users) tensor; ``rows`` (E,) the batch row of each entry, ``users`` (E,) and
        ``values`` (E,) its user and rating."""
        starts, stops = self.indptr[item_idx], self.indptr[item_idx + 1]
        counts = stops - starts
        row_of = np.repeat(np.arange(len(item_idx)), counts)
        entry = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        users = torch.from_numpy(self.users[entry])
        values = torch.from_numpy(self.values[entry])
        rows = torch.from_numpy(row_of)
        inputs = torch.sparse_coo_tensor(
            torch.stack([rows, users]),
            values,
            (len(item_idx), self.num_users),
            is_coalesced=True,
            check_invariants=False,
        )
        return inputs, rows, users, values
