"""What the page needs to know about the served catalogue: genres, decades, the star scale.

It is read once, at start, from the artifact folder the served ``.mar`` was built from (``make
serve`` passes the Makefile's ``ARTIFACT``): ``config.json`` gives the rating model's lowest and
highest rating, ``vocab.npz`` the genre names and titles (hence the decades). Only these plain
files are read: the web app never loads the model, which lives in TorchServe.

The step between stars is the lowest rating. Every MovieLens release either has whole stars
from 1 to 5 (ML-100K, ML-1M) or half stars from 0.5 to 5 (ML-10M and later, ml-latest): the
lowest rating is one step in both, so the artifact the model was trained on says which the
dataset has, and the page offers half stars exactly where the model was trained on them. A
setting (``--rating-step``) overrides it; without an artifact the page offers whole stars from 1
to 5 and no genre or decade filter, which the model server accepts from any MovieLens model.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.titles import NO_YEAR, release_years

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Catalogue:
    """Genres, decades and the star scale of the served model (see the module docstring).

    Attributes
    ----------
    genres : tuple of str
        Every genre a filter may name, in the catalogue's order.
    decades : tuple of int
        The first year of each decade some movie was released in, oldest first.
    rating_min, rating_max, rating_step : float
        The scale a new user's ratings must lie on.
    source : str
        Where the facts came from (shown in the log at start).
    """

    genres: tuple[str, ...] = ()
    decades: tuple[int, ...] = ()
    rating_min: float = 1.0
    rating_max: float = 5.0
    rating_step: float = 1.0
    source: str = field(default="defaults (no artifact)", compare=False)

    def __post_init__(self) -> None:
        if not 0 < self.rating_step <= self.rating_max - self.rating_min:
            raise ValueError(
                f"rating step {self.rating_step:g} does not fit the scale "
                f"{self.rating_min:g}..{self.rating_max:g}"
            )
        steps = (self.rating_max - self.rating_min) / self.rating_step
        if abs(steps - round(steps)) > 1e-9:
            raise ValueError(
                f"the scale {self.rating_min:g}..{self.rating_max:g} is not whole steps "
                f"of {self.rating_step:g}"
            )

    @classmethod
    def from_artifact(cls, folder: str | Path, rating_step: float | None = None) -> Catalogue:
        """The catalogue of an artifact folder; the defaults (logged) when there is none.

        Parameters
        ----------
        folder : path
            An artifact folder (config.json, vocab.npz), e.g. ``artifacts/ml-100k``.
        rating_step : float, optional
            The step between stars; by default the lowest rating (module docstring).
        """
        folder = Path(folder)
        config_file, vocab_file = folder / "config.json", folder / "vocab.npz"
        if not (config_file.is_file() and vocab_file.is_file()):
            log.warning("no artifact in %s: whole stars 1-5, no genre or decade filter", folder)
            return cls(rating_step=rating_step or 1.0)
        model = json.loads(config_file.read_text()).get("model", {})
        lo, hi = float(model.get("min_rating", 1.0)), float(model.get("max_rating", 5.0))
        with np.load(vocab_file, allow_pickle=False) as vocab:
            genres = tuple(str(g) for g in vocab["genre_names"])
            years = release_years(vocab["titles"])
        decades = tuple(sorted({int(y) // 10 * 10 for y in years if y != NO_YEAR}))
        return cls(genres, decades, lo, hi, rating_step or lo, source=str(folder))

    def to_json(self) -> dict:
        """What ``GET /api/config`` answers."""
        return {
            "genres": list(self.genres),
            "decades": list(self.decades),
            "rating": {"min": self.rating_min, "max": self.rating_max, "step": self.rating_step},
        }
