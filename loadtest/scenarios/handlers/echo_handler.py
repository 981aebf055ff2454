"""The benchmark's floor: answers each request with its own body, and loads no model.

Whatever our handler is measured against, this is the most TorchServe itself (frontend, worker
protocol, batching) can serve on the same machine with the same settings. TorchServe has
already decoded the JSON body into a dict, so the echo encodes it back; nothing else happens.
"""

from __future__ import annotations

import json

from ts.torch_handler.base_handler import BaseHandler


class EchoHandler(BaseHandler):
    """Returns every request's body unchanged, as compact JSON."""

    def initialize(self, context) -> None:
        self.context = context
        self.initialized = True

    def handle(self, data: list, context) -> list[str | bytes | bytearray]:
        out = []
        for idx, row in enumerate(data):
            body = row.get("body") if row.get("body") is not None else row.get("data")
            context.set_response_content_type(idx, "application/json")
            out.append(body if isinstance(body, str | bytes | bytearray) else json.dumps(body))
        return out
