"""TorchServe handler for movierec: the thin adapter between TorchServe and :mod:`model`.

Packaged by ``make archive`` with the folders ``model/`` and ``handler/`` and the artifact files
(config.json, weights.pt, vocab.npz, metrics.json) as extra files; TorchServe puts the model
directory on ``sys.path``, so the packages import as they do in the repository.

What each request may be is documented in :mod:`handler.parsing`, the answers in
:mod:`handler.answering`. Every answer also carries ``"model": {"name", "version"}``.
"""

from __future__ import annotations

import logging
import os

import torch
from ts.context import Context
from ts.torch_handler.base_handler import BaseHandler

from handler import metrics
from handler.answering import answer_batch, to_json
from handler.parsing import Limits
from model.recommender import Recommender

log = logging.getLogger(__name__)

_PHRASES = {200: "OK", 400: "Bad Request", 404: "Not Found", 413: "Payload Too Large"}
_LIMITS = ("max_k", "max_pairs", "max_ratings", "default_k")


class MovieRecHandler(BaseHandler):
    """Ratings, top-K, new users, similar movies and a popularity fallback over one artifact."""

    def initialize(self, context: Context) -> None:
        """Load the artifact from the model directory and apply ``handler:`` settings."""
        self.context = context
        model_dir = context.system_properties["model_dir"]
        settings = (getattr(context, "model_yaml_config", None) or {}).get("handler", {}) or {}
        # TorchServe never sets torch threads: with several workers on few cores, each
        # worker's default pool (one thread per core) would fight the others.
        threads = int(settings.get("torch_threads", 0)) or max(1, (os.cpu_count() or 1) // 2)
        # A bulk registration's workers yield the CPU to the interactive ones (docs/operations.md,
        # "Interactive and bulk"); set before torch starts threads, which inherit it.
        nice = int(settings.get("nice", 0))
        if nice:
            os.nice(nice)
        torch.set_num_threads(threads)
        self.limits = Limits(
            **{f: int(settings[f]) for f in _LIMITS if f in settings},
            bulk_model=str(settings.get("bulk_model") or ""),
        )
        ridge = float(settings.get("fold_in_ridge", 1.0))
        # movierec's counters, sent once a second rather than at every batch (handler/metrics.py).
        self.recorder = metrics.Recorder(float(settings.get("metrics_interval_s", 1.0)))
        self.recommender = Recommender.from_artifact(model_dir, ridge=ridge)
        # The title index is built now (about 1 s at 62,000 movies), not by the first search.
        _ = self.recommender.titles
        # Every answer names the model and version it came from (the .mar's manifest).
        manifest = (getattr(context, "manifest", None) or {}).get("model", {}) or {}
        self.model_info = {
            "name": manifest.get("modelName", context.model_name),
            "version": manifest.get("modelVersion"),
        }
        if self.recommender.popularity is None:
            log.warning("vocab.npz has no rating statistics: the popular fallback answers 400")
        log.info(
            "%s %s loaded from %s: %d users, %d movies, %d torch threads, nice %d, "
            "fold-in ridge %g, %s",
            context.model_name,
            self.model_info["version"],
            model_dir,
            self.recommender.num_users,
            self.recommender.num_movies,
            threads,
            nice,
            ridge,
            self.limits,
        )
        self.initialized = True

    def handle(self, data: list, context: Context) -> list[str]:
        """Answer a batch: one JSON string per request; errors get their own status. Counts
        and times each kind of request in movierec's metrics (handler/metrics.py)."""
        batch = answer_batch(self.recommender, data, self.limits)
        self.recorder.add(getattr(context, "metrics", None), batch.counted(), batch.ms)
        out: list[str] = []
        for idx, (status, body) in enumerate(batch.answers):
            if status != 200:
                context.set_response_status(status, _PHRASES.get(status, ""), idx)
            context.set_response_content_type(idx, "application/json")
            out.append(to_json({**body, "model": self.model_info}))
        return out
