"""TorchServe handler for movierec: the thin adapter between TorchServe and :mod:`model`.

Packaged by ``make archive`` with the folders ``model/`` and ``handler/`` and the artifact files
(config.json, weights.pt, vocab.npz, metrics.json) as extra files; TorchServe puts the model
directory on ``sys.path``, so the packages import as they do in the repository.

What each request may be, and the answers, are documented in :mod:`handler.protocol`.
"""

from __future__ import annotations

import logging
import os

import torch
from ts.torch_handler.base_handler import BaseHandler

from handler.protocol import Limits, answer_batch, to_json
from model.recommender import Recommender

log = logging.getLogger(__name__)

_PHRASES = {200: "OK", 400: "Bad Request", 404: "Not Found"}


class MovieRecHandler(BaseHandler):
    """Batched rating prediction and top-K recommendation over one movierec artifact."""

    def initialize(self, context) -> None:
        """Load the artifact from the model directory and apply ``handler:`` settings."""
        self.context = context
        model_dir = context.system_properties["model_dir"]
        settings = (getattr(context, "model_yaml_config", None) or {}).get("handler", {}) or {}
        # TorchServe never sets torch threads: with several workers on few cores, each
        # worker's default pool (one thread per core) would fight the others.
        threads = int(settings.get("torch_threads", 0)) or max(1, (os.cpu_count() or 1) // 2)
        torch.set_num_threads(threads)
        self.limits = Limits(
            **{f: int(settings[f]) for f in ("max_k", "max_pairs", "default_k") if f in settings}
        )
        self.recommender = Recommender.from_artifact(model_dir)
        vocab = self.recommender.vocab
        log.info(
            "movierec loaded from %s: %d users, %d movies, %d torch threads, %s",
            model_dir,
            vocab.num_users,
            vocab.num_items,
            threads,
            self.limits,
        )
        self.initialized = True

    def handle(self, data: list, context) -> list[str]:
        """Answer a batch: one JSON string per request; errors get their own status."""
        answers = answer_batch(self.recommender, data, self.limits)
        out = []
        for idx, (status, body) in enumerate(answers):
            if status != 200:
                context.set_response_status(status, _PHRASES.get(status, ""), idx)
            context.set_response_content_type(idx, "application/json")
            out.append(to_json(body))
        return out
