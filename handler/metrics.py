"""movierec's own metrics, sent through TorchServe's metrics API (``context.metrics``).

Per batch, the handler answers each kind of work with its own call of
:func:`handler.answering.answer_batch` and times it (:func:`answer_by_kind`), then
:func:`record` adds to three counters, declared in ``metrics.yaml`` (TorchServe 0.12 shows
undeclared ones nowhere):

    movierec_requests{kind, status}         requests answered
    movierec_client_errors{field, status}   400 and 404 answers, by the field at fault
    movierec_handler_ms{kind}               handler milliseconds, summed over requests

Kinds: rating, pairs, top_k, new_user, similar, chart, search, fallback (a top_k answered with
popular movies) and invalid (no kind recognised). Labels come from fixed sets only: a field name a
client made up is counted as ``other``, so clients cannot grow the label set. One log line per
counter and label set per batch (TorchServe carries metrics from the worker as log lines), not
per request. Nothing here fails a batch: a metrics error is logged and the answers go out.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from typing import Any, cast

from handler.answering import Answer, answer_batch
from handler.parsing import FIELDS as REQUEST_FIELDS
from handler.parsing import Limits, decode_body
from handler.parsing import request_kind as parsed_kind
from model.errors import BadRequestError
from model.recommender import Recommender

log = logging.getLogger(__name__)

KINDS = (
    "rating",
    "pairs",
    "top_k",
    "new_user",
    "similar",
    "chart",
    "search",
    "fallback",
    "invalid",
)
# Every field a request kind has (handler/parsing.py), and "body"; any other is "other".
FIELDS = REQUEST_FIELDS | {"body"}
# The kinds one answer_batch call answers together: a rating and pairs share a forward pass.
_WORK = {"rating": "ratings", "pairs": "ratings", "top_k": "top_k", "new_user": "new_user"}
_WORK |= {"similar": "similar", "chart": "chart", "search": "search", "invalid": "invalid"}


def request_kind(body: object) -> str:
    """The kind of a decoded body, by its main field alone (as handler/parsing.py tells them
    apart, without validating the rest): ``invalid`` when it has none, or two."""
    return parsed_kind(body) or "invalid"


def error_field(field: object) -> str:
    """The label of the field an error named: indices dropped, unknown names ``other``."""
    name = re.split(r"[\[.]", str(field), maxsplit=1)[0]
    return name if name in FIELDS else "other"


def answer_by_kind(
    recommender: Recommender, rows: list, limits: Limits
) -> tuple[list[Answer], list[str], dict[str, float]]:
    """Answer a batch as :func:`answer_batch` does, one call per kind of work, timed.

    Returns the answers in row order, each row's kind, and the milliseconds each kind of work
    took. A body sent as text is decoded once here and handed on decoded.
    """
    kinds: list[str] = []
    groups: dict[str, list[int]] = {}
    decoded: list = []
    for n, row in enumerate(rows):
        try:
            body = decode_body(row)
        except BadRequestError:
            body = None  # answer_batch names the problem
        kind = "invalid" if body is None else request_kind(body)
        kinds.append(kind)
        decoded.append({"body": body} if isinstance(body, dict) else row)
        groups.setdefault(_WORK[kind], []).append(n)
    slots: list[Answer | None] = [None] * len(rows)
    work_ms: dict[str, float] = {}
    for work, indices in groups.items():
        start = time.perf_counter()
        for n, answer in zip(
            indices, answer_batch(recommender, [decoded[n] for n in indices], limits)
        ):
            slots[n] = answer
        work_ms[work] = (time.perf_counter() - start) * 1e3
    answers = cast(list[Answer], slots)  # every row is in one group, so every slot is filled
    for n, (status, body) in enumerate(answers):
        if kinds[n] == "top_k" and status == 200 and body.get("fallback"):
            kinds[n] = "fallback"
    ms = {kind: work_ms[_WORK.get(kind, "top_k")] for kind in set(kinds)}
    return answers, kinds, ms


def record(metrics: Any, answers: list[Answer], kinds: list[str], ms: dict[str, float]) -> None:
    """Add one batch to the counters of ``metrics`` (TorchServe's ``context.metrics``; None
    outside a server)."""
    if metrics is None:
        return
    from ts.metrics.dimension import Dimension
    from ts.metrics.metric_type_enum import MetricTypes

    requests = Counter((kind, status) for kind, (status, _) in zip(kinds, answers))
    errors = Counter(
        (error_field(body.get("error", {}).get("field")), status)
        for status, body in answers
        if 400 <= status < 500
    )
    counter = MetricTypes.COUNTER
    try:
        for (kind, status), n in requests.items():
            dims = [Dimension("kind", kind), Dimension("status", str(status))]
            metrics.add_metric("movierec_requests", n, "count", None, dims, counter)
        for (field, status), n in errors.items():
            dims = [Dimension("field", field), Dimension("status", str(status))]
            metrics.add_metric("movierec_client_errors", n, "count", None, dims, counter)
        for kind, n in Counter(kinds).items():
            total = round(ms[kind] * n, 3)
            dims = [Dimension("kind", kind)]
            metrics.add_metric("movierec_handler_ms", total, "ms", None, dims, counter)
    except Exception:  # metrics are best effort: never fail the batch over them
        log.exception("movierec metrics not recorded for this batch")
