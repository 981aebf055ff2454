"""movierec's own metrics, sent through TorchServe's metrics API (``context.metrics``).

Per batch, :func:`record` adds to three counters, declared in ``metrics.yaml`` (TorchServe 0.12
shows undeclared ones nowhere):

    movierec_requests{kind, status}         requests answered
    movierec_client_errors{field, status}   400 and 404 answers, by the field at fault
    movierec_handler_ms{kind}               handler milliseconds, summed over requests

This module only records: what each request was (its kind, status and the label of the field at
fault) and how long each kind took come from :class:`handler.answering.Batch`. Kinds: rating,
pairs, top_k, new_user, similar, chart, search, fallback (a top_k answered with popular movies)
and invalid (no kind recognised). Labels come from fixed sets only (a field name a client made
up is counted as ``other``), so clients cannot grow the label set. One log line per counter and
label set per batch (TorchServe carries metrics from the worker as log lines), not per request.
Nothing here fails a batch: a metrics error is logged and the answers go out.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)


def record(
    metrics: Any, requests: Sequence[tuple[str, int, str | None]], ms: Mapping[str, float]
) -> None:
    """Add one batch to the counters of ``metrics`` (TorchServe's ``context.metrics``; None
    outside a server): ``requests`` holds each request's kind, status and error field label
    (None unless 4xx), ``ms`` the milliseconds per kind, charged to each of its requests."""
    if metrics is None:
        return
    from ts.metrics.dimension import Dimension
    from ts.metrics.metric_type_enum import MetricTypes

    answered = Counter((kind, status) for kind, status, _ in requests)
    errors = Counter((field, status) for _, status, field in requests if field is not None)
    kinds = Counter(kind for kind, _, _ in requests)
    counter = MetricTypes.COUNTER
    try:
        for (kind, status), n in answered.items():
            dims = [Dimension("kind", kind), Dimension("status", str(status))]
            metrics.add_metric("movierec_requests", n, "count", None, dims, counter)
        for (field, status), n in errors.items():
            dims = [Dimension("field", field), Dimension("status", str(status))]
            metrics.add_metric("movierec_client_errors", n, "count", None, dims, counter)
        for kind, n in kinds.items():
            total = round(ms[kind] * n, 3)
            dims = [Dimension("kind", kind)]
            metrics.add_metric("movierec_handler_ms", total, "ms", None, dims, counter)
    except Exception:  # metrics are best effort: never fail the batch over them
        log.exception("movierec metrics not recorded for this batch")
