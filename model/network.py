"""The served model: a factorization whose item side may come from a deep encoder.

    r_hat(u, i) = offset + b_u + b_i + <p_u, q_i>        clamped to the rating scale

Two models produce it:
- :class:`train.fitting.autorec.ItemAutoRec` (ours) computes each item's vector ``q_i`` with a
  kernelized autoencoder over the item's ratings and genres; ``p_u``, ``b_u`` are its decoder.
- Plain biased matrix factorization (the baseline) learns ``p``, ``q``, ``b`` directly, trained
  with :func:`train.fitting.training.fit`.

Either way serving is the same few tensor operations: a dot product per pair, one matrix
product for top-K over the catalogue. The checkpoint stores :class:`FactorModelConfig`, so
loading rebuilds the network without sizes written anywhere else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class FactorModelConfig:
    """Sizes and range of :class:`FactorModel`; stored in every artifact."""

    num_users: int
    num_items: int
    code_dim: int = 64  # size of user and item vectors
    min_rating: float = 1.0
    max_rating: float = 5.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> FactorModelConfig:
        return cls(**values)


class TransposedCopy:
    """``matrix.T`` kept contiguous, remade whenever ``matrix`` changes (in place or replaced).

    Scoring a few users against the whole catalogue, ``x @ W.T`` with ``W`` (N, k), is a
    matrix-vector product that is memory-bound: it reads all of ``W`` once. Read row by row
    (``W`` as stored) it runs 3-4x slower on one CPU thread than read column by column from a
    contiguous ``W.T`` (N = 62,000, k = 128: 4.9 ms against 1.3 ms; the 200 x 62,000
    decoder of the ranking model: 8.4 ms against 2.3 ms). The copy costs N x k floats; row
    gathers (pair requests, fold-in) keep reading the row-major original, which the copy's
    layout would make 3x slower.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._copy: torch.Tensor | None = None

    def __call__(self, matrix: torch.Tensor) -> torch.Tensor:
        # Tensor._version counts in-place changes (optimizer steps, copy_, load_state_dict).
        key = (id(matrix), matrix.data_ptr(), matrix._version, tuple(matrix.shape), matrix.dtype)
        if key != self._key or self._copy is None:
            self._copy = matrix.detach().T.contiguous()
            self._key = key
        return self._copy


class FactorModel(nn.Module):
    """User and item vectors with biases; predictions are clamped to the scale in eval mode.

    Parameters
    ----------
    config : FactorModelConfig
    init_std : float
        Standard deviation of the initial vectors (small, so training starts near the mean).
    """

    def __init__(self, config: FactorModelConfig, init_std: float = 0.01):
        super().__init__()
        self.config = config
        self.user_vectors = nn.Parameter(torch.randn(config.num_users, config.code_dim) * init_std)
        self.item_codes = nn.Parameter(torch.randn(config.num_items, config.code_dim) * init_std)
        self.user_bias = nn.Parameter(torch.zeros(config.num_users))
        self.item_bias = nn.Parameter(torch.zeros(config.num_items))
        self.offset = nn.Parameter(torch.zeros(()))
        self._codes_by_column = TransposedCopy()

    def codes_by_column(self) -> torch.Tensor:
        """The item codes as a contiguous (k, N) matrix, for products with the whole
        catalogue (see :class:`TransposedCopy`); not a parameter, never saved."""
        return self._codes_by_column(self.item_codes)

    def _finish(self, raw: torch.Tensor) -> torch.Tensor:
        # Clamp only in eval mode: in training it would zero the gradient of outliers.
        if self.training:
            return raw
        return raw.clamp(self.config.min_rating, self.config.max_rating)

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Predicted ratings for pairs: ``user_idx`` (B,), ``item_idx`` (B,) -> (B,)."""
        return self._finish(self.raw(user_idx, item_idx))

    def raw(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Unclamped predictions for pairs: ``user_idx`` (B,), ``item_idx`` (B,) -> (B,).

        What a blend of models combines: each component's raw prediction, the sum clamped
        once (``train.fitting.blend``)."""
        p = self.user_vectors[user_idx]  # (B, k)
        q = self.item_codes[item_idx]  # (B, k)
        return self.offset + self.user_bias[user_idx] + self.item_bias[item_idx] + (p * q).sum(1)

    def regularization(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Mean squared norm of the batch's vectors and biases (per-sample L2, as in MF)."""
        p, q = self.user_vectors[user_idx], self.item_codes[item_idx]
        b = self.user_bias[user_idx] ** 2 + self.item_bias[item_idx] ** 2
        return ((p**2).sum(1) + (q**2).sum(1) + b).mean()

    @torch.no_grad()
    def score_all(self, user_idx: torch.Tensor) -> torch.Tensor:
        """Predicted ratings of every item for each user: (B,) -> (B, num_items)."""
        return self.score_vectors(self.user_vectors[user_idx], self.user_bias[user_idx])

    @torch.no_grad()
    def score_vectors(self, vectors: torch.Tensor, biases: torch.Tensor) -> torch.Tensor:
        """Predicted ratings of every item for users given by their vectors and biases
        (known users' rows, or new users' fitted ones): (B, k), (B,) -> (B, num_items)."""
        vectors = vectors.to(self.item_codes.dtype)
        raw = vectors @ self.codes_by_column()  # (B, N): the one big operation of top-K
        raw += self.offset + biases.to(raw.dtype)[:, None] + self.item_bias[None, :]
        return raw.clamp(self.config.min_rating, self.config.max_rating)

    @torch.no_grad()
    def predict_vectors(
        self,
        vectors: torch.Tensor,
        biases: torch.Tensor,
        rows: torch.Tensor,
        item_idx: torch.Tensor,
    ) -> torch.Tensor:
        """Predicted ratings for pairs of (user given by a vector, item): ``vectors`` (B, k),
        ``biases`` (B,); ``rows`` (P,) index into them, ``item_idx`` (P,) -> (P,)."""
        p = vectors.to(self.item_codes.dtype)[rows]  # (P, k)
        q = self.item_codes[item_idx]  # (P, k)
        raw = self.offset + biases.to(p.dtype)[rows] + self.item_bias[item_idx] + (p * q).sum(1)
        return raw.clamp(self.config.min_rating, self.config.max_rating)


@torch.no_grad()
def principal_directions(model: FactorModel) -> torch.Tensor:
    """Orthonormal principal directions of ``model``'s item codes, strongest first: (k, k)
    float64 (eigenvectors of ``Q^T Q``)."""
    codes = model.item_codes.detach().double()
    _, directions = torch.linalg.eigh(codes.T @ codes)  # ascending eigenvalues
    return directions.flip(1)


@torch.no_grad()
def project(model: FactorModel, rank: int, directions: torch.Tensor | None = None) -> FactorModel:
    """``model`` with its vectors projected on the ``rank`` principal directions of its item
    codes: ``p_u W``, ``q_i W`` with ``W`` (k, rank) orthonormal, biases unchanged.

    Serving costs grow with the vector size (top-K reads every item code once per request),
    and the codes an ensemble of autoencoders exports are highly redundant: on ML-100K the
    1,500-dimensional codes of three averaged members keep 99.9% of their energy in 128
    directions, and the predictions do not change in the fourth decimal. Because ``W`` is
    orthonormal, a new user's vector fitted by ridge regression on the projected codes is the
    one fitted on the full codes restricted to that subspace (same penalty, same geometry).
    ``directions`` (from :func:`principal_directions`) saves recomputing them per rank.
    """
    codes = model.item_codes.detach().double()
    if not 0 < rank <= codes.shape[1]:
        raise ValueError(f"rank must be in 1..{codes.shape[1]}, got {rank}")
    if directions is None:
        directions = principal_directions(model)
    w = directions[:, :rank]  # (k, rank), the strongest direction first
    config = FactorModelConfig(**{**model.config.to_dict(), "code_dim": rank})
    out = FactorModel(config)
    dtype = model.item_codes.dtype
    out.user_vectors.copy_((model.user_vectors.detach().double() @ w).to(dtype))
    out.item_codes.copy_((codes @ w).to(dtype))
    for name in ("user_bias", "item_bias", "offset"):
        getattr(out, name).copy_(getattr(model, name))
    return out.train(model.training)
