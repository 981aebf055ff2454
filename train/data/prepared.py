"""A split encoded against a vocabulary: the data every model is fitted on and scored with.

:func:`prepare` encodes the three parts of a split, :func:`prepare_all` all of a dataset's
ratings (the served refit), :func:`prepare_refit` the split's training and validation parts
together (the refit whose test part the report scores). Each part is kept twice over the same
memory: as tensors (:class:`Encoded`, what the rating models train on) and, through
:meth:`Prepared.interactions`, as :class:`~train.data.interactions.Interactions` (what peers,
metrics and the ranking model take).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from model.vocab import Vocabulary
from train.data import Dataset, Split
from train.data.interactions import Interactions

PARTS = ("train", "validation", "test")


@dataclass
class Encoded:
    """A split part as dense tensors: ``user_idx``, ``item_idx`` (int64), ``rating`` (float32)."""

    user_idx: torch.Tensor
    item_idx: torch.Tensor
    rating: torch.Tensor

    def __len__(self) -> int:
        return len(self.rating)

    def interactions(self, num_users: int, num_items: int) -> Interactions:
        """The same ratings as numpy arrays (views of the tensors, no copy)."""
        return Interactions(
            self.user_idx.numpy(), self.item_idx.numpy(), self.rating.numpy(), num_users, num_items
        )


def encode(frame: pd.DataFrame, vocab: Vocabulary) -> Encoded:
    """Turn a ratings frame with raw ids into dense tensors using ``vocab``."""
    return Encoded(
        user_idx=torch.from_numpy(vocab.user_index(frame["user_id"].to_numpy())),
        item_idx=torch.from_numpy(vocab.item_index(frame["movie_id"].to_numpy())),
        rating=torch.from_numpy(frame["rating"].to_numpy(dtype=np.float32, copy=True)),
    )


@dataclass
class Prepared:
    """A split encoded against a vocabulary that holds its training part.

    ``validation`` and ``test`` are None for all of a dataset's ratings (:func:`prepare_all`);
    ``trained_on`` says which ratings ``train`` (and the vocabulary's rated sets and
    popularity statistics) are: ``"split train part"`` or ``"all ratings"``.
    ``dataset_name`` (``"ml-100k"``) brings the preset values chosen on that dataset
    (:data:`~train.fitting.settings.CHOSEN_ON`, see :func:`~train.fitting.experiment.autorec_configs`);
    "" none.
    """

    vocab: Vocabulary
    train: Encoded
    validation: Encoded | None
    test: Encoded | None
    rating_scale: tuple[float, float]
    trained_on: str = "split train part"
    dataset_name: str = ""

    def part(self, name: str) -> Encoded:
        """Part ``name`` ("train", "validation" or "test"); ``ValueError`` when there is none."""
        if name not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {name!r}")
        found: Encoded | None = getattr(self, name)
        if found is None:
            raise ValueError(f"these ratings ({self.trained_on}) have no {name} part")
        return found

    def interactions(self, part: str = "train") -> Interactions:
        """Part ``part`` as :class:`Interactions` over the vocabulary's users and movies."""
        return self.part(part).interactions(self.vocab.num_users, self.vocab.num_items)

    def rating_counts(self) -> np.ndarray:
        """(num_items,) each movie's number of training ratings: the popularity the vocabulary
        holds."""
        counts = self.vocab.rating_count
        if counts is None:  # only a vocab.npz written before counts were kept lacks them
            raise ValueError("the vocabulary holds no rating counts")
        return counts

    def holdings(self) -> dict:
        """Which ratings a model fitted on ``train`` and its vocabulary hold, with counts:
        what config.json and metrics.json record as ``trained_on``."""
        return {
            "ratings": self.trained_on,
            "count": len(self.train),
            "users": int(np.count_nonzero(np.diff(self.vocab.rated_indptr))),
            "movies": int(np.count_nonzero(self.rating_counts())),
            "not_held": {
                part: len(d)
                for part, d in (("validation", self.validation), ("test", self.test))
                if d is not None
            },
        }


def prepare(dataset: Dataset, split: Split) -> Prepared:
    """Encode the three parts of ``split`` against a vocabulary that indexes every user and
    movie of the dataset (the same indices for every split; any of them can be asked about)
    but holds only the training part: the rated sets that served top-K excludes and the
    popularity statistics are those of the ratings the model learns from, so an artifact
    trained on a split, served, ranks exactly as the offline evaluation does."""
    vocab = Vocabulary.build(
        split.train, dataset.movies, dataset.genre_names, ids_from=dataset.ratings
    )
    train, validation, test = (encode(f, vocab) for f in (split.train, split.validation, split.test))
    return Prepared(
        vocab, train, validation, test, rating_scale=dataset.rating_scale, dataset_name=dataset.name
    )


def prepare_all(dataset: Dataset) -> Prepared:
    """All of the dataset's ratings as the training part, nothing held out: for the refit of
    a model whose settings were chosen on a split
    (:func:`~train.fitting.experiment.refit_autorec`). Indices are the same as
    :func:`prepare`'s for any split of ``dataset``."""
    vocab = Vocabulary.build(dataset.ratings, dataset.movies, dataset.genre_names)
    return Prepared(
        vocab,
        encode(dataset.ratings, vocab),
        None,
        None,
        rating_scale=dataset.rating_scale,
        trained_on="all ratings",
        dataset_name=dataset.name,
    )


def prepare_refit(dataset: Dataset, split: Split) -> Prepared:
    """The split with its validation part moved into training and its test part kept: what a
    model whose settings (epochs, blend weights, served size) were chosen on the split's
    validation part is refit on before its test part is scored, once
    (:func:`~train.fitting.experiment.refit_autorec`, :func:`~train.fitting.experiment.refit_mf`;
    the baselines, with nothing to choose, are simply fitted on it). Nothing is held out for
    validation. Indices are the same as :func:`prepare`'s."""
    merged = Split(
        pd.concat([split.train, split.validation], ignore_index=True),
        split.validation.iloc[:0],
        split.test,
        split.protocol,
    )
    return dataclasses.replace(
        prepare(dataset, merged), validation=None, trained_on="split train and validation parts"
    )
