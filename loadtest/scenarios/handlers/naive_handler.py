"""The benchmark's naive baseline: the same model served the textbook way.

It follows the pattern of TorchServe's examples: BaseHandler's own ``handle`` drives
``preprocess -> inference -> postprocess`` for a batch of one (the archive sets batchSize 1),
leaves torch's thread count at its default, and returns a dict that TorchServe serialises with
``json.dumps(indent=2)``. It answers single-rating requests only, which is what the benchmark
sends; anything else fails the request, as a textbook handler would.
"""

from __future__ import annotations

import numpy as np
import torch
from ts.torch_handler.base_handler import BaseHandler

from model import artifact


class NaiveHandler(BaseHandler):
    """One ``{"user_id", "movie_id"}`` request per forward pass."""

    def initialize(self, context) -> None:
        self.context = context
        self.manifest = context.manifest
        self.model, self.vocab, _ = artifact.load(context.system_properties["model_dir"])
        self.initialized = True

    def preprocess(self, data: list) -> list[tuple[torch.Tensor, torch.Tensor, dict]]:
        rows = []
        for row in data:
            body = row.get("body") or row.get("data")
            users = self.vocab.user_index(np.array([body["user_id"]]))
            items = self.vocab.item_index(np.array([body["movie_id"]]))
            rows.append((torch.as_tensor(users), torch.as_tensor(items), body))
        return rows

    def inference(self, rows: list) -> list[tuple[dict, float]]:
        with torch.no_grad():
            return [(body, float(self.model(users, items)[0])) for users, items, body in rows]

    def postprocess(self, results: list) -> list[dict]:
        return [
            {"user_id": body["user_id"], "movie_id": body["movie_id"], "rating": round(rating, 4)}
            for body, rating in results
        ]
