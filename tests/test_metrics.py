"""movierec's own metrics (handler/metrics.py): the kind and field labels, the [METRICS] lines
the handler sends through a real TorchServe metrics cache, and (integration) the counters on
the session server's Prometheus endpoint, parsed with prometheus_client, moving by exactly what
was sent."""

from __future__ import annotations

import logging
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from ts.context import RequestProcessor
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl

from client import MovieRecClient
from handler.answering import KINDS, answer_batch, to_json
from handler.parsing import field_label, request_kind
from tests.test_handler import handler, make_context  # noqa: F401 (a fixture)

REPO = Path(__file__).resolve().parent.parent
METRICS = ("movierec_requests", "movierec_client_errors", "movierec_handler_ms")


def kind(body: object) -> str:
    return request_kind(body) or "invalid"


def test_each_body_gets_its_kind_by_its_main_field():
    assert kind({"user_id": 1, "movie_id": 2}) == "rating"
    assert kind({"pairs": "not even a list"}) == "pairs"
    assert kind({"user_id": 1, "k": 3, "fallback": "popular"}) == "top_k"
    assert kind({"ratings": {}}) == "new_user"
    assert kind({"similar_to": 5, "zzz": 1}) == "similar"
    assert kind({"chart": "popular", "years": "x"}) == "chart"
    assert kind({"search": 3}) == "search"
    invalid = ({}, {"pairs": [], "ratings": {}}, {"search": "x", "chart": "popular"}, [1], "x")
    for body in (*invalid, None, {"movie_id": 3}):
        assert kind(body) == "invalid"


def test_error_fields_are_a_fixed_set_of_labels():
    assert field_label("pairs[1][1]") == "pairs"
    assert field_label('ratings["11"]') == "ratings"
    assert field_label("genres[0]") == "genres"
    assert field_label("k") == "k"
    for field in ("search", "chart", "years", "novelty", "explain"):
        assert field_label(field) == field
    for made_up in ("movie", "x" * 500, 'pairs"]', None, ""):
        assert field_label(made_up) == "other"


def _rows(rec) -> list[dict]:
    """One batch with every kind, good and bad (see the expected counts below)."""
    user, movie = int(rec.vocab.user_ids[0]), int(rec.vocab.movie_ids[0])
    return [
        {"body": {"user_id": user, "movie_id": movie}},
        {"body": {"user_id": user, "movie_id": 999999}},
        {"body": {"pairs": [[user, movie], [user, movie]]}},
        {"body": {"pairs": [[user, movie], [user, 999999]]}},
        {"body": {"user_id": user, "k": 2}},
        {"data": b'{"user_id": 999999, "k": 2, "fallback": "popular"}'},
        {"body": {"user_id": 999999}},
        {"body": {"user_id": user, "k": 0}},
        {"body": {"ratings": {str(movie): 4}, "k": 2}},
        {"body": {"similar_to": movie, "k": 2, "genres": ["Westerns"]}},
        {"body": {"user_id": user, "movie": movie}},
        {"body": b"not json"},
        {"body": {"chart": "popular", "k": 2, "years": [1990, 1999]}},
        {"body": {"chart": "popular", "years": [1999, 1990]}},
        {"body": {"search": "movie", "k": 3}},
        {"body": {"search": ""}},
        {"body": {"user_id": user, "novelty": 2}},
        {"body": {"ratings": {str(movie): 4}, "explain": "yes"}},
    ]


EXPECTED_REQUESTS = {
    ("rating", "200"): 1,
    ("rating", "404"): 1,
    ("pairs", "200"): 1,
    ("pairs", "404"): 1,
    ("top_k", "200"): 1,
    ("fallback", "200"): 1,
    ("top_k", "404"): 1,
    ("top_k", "400"): 3,
    ("new_user", "200"): 1,
    ("new_user", "400"): 1,
    ("chart", "200"): 1,
    ("chart", "400"): 1,
    ("search", "200"): 1,
    ("search", "400"): 1,
    ("similar", "400"): 1,
    ("invalid", "400"): 1,
}
EXPECTED_ERRORS = {
    ("movie_id", "404"): 1,
    ("pairs", "404"): 1,
    ("user_id", "404"): 1,
    ("k", "400"): 1,
    ("genres", "400"): 1,
    ("other", "400"): 1,
    ("body", "400"): 1,
    ("years", "400"): 1,
    ("search", "400"): 1,
    ("novelty", "400"): 1,
    ("explain", "400"): 1,
}


def test_the_handler_counts_each_kind_and_answers_as_before(handler, caplog):  # noqa: F811
    rec = handler.recommender
    rows = _rows(rec)
    ctx = make_context(handler.context.system_properties["model_dir"])
    ctx.request_processor = [RequestProcessor({}) for _ in rows]
    ctx.metrics = MetricsCacheYamlImpl(config_file_path=str(REPO / "metrics.yaml"))
    ctx.metrics.initialize_cache()
    ctx.metrics.model_name = "movierec"
    ctx.metrics.set_request_ids({n: f"req{n}" for n in range(len(rows))})
    handler.recorder.flush()  # what earlier tests counted goes to their own metrics
    with caplog.at_level(logging.INFO, logger="ts.metrics.caching_metric"):
        out = handler.handle(rows, ctx)
        handler.recorder.flush()  # sent once a second otherwise
    # Batching changes no answer: each row answered alone gets the same body.
    model = {"model": handler.model_info}
    alone = [answer_batch(rec, [row], handler.limits).answers[0][1] for row in rows]
    assert out == [to_json({**b, **model}) for b in alone]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[METRICS]")]
    assert not [r for r in caplog.records if "Failed" in r.getMessage()]
    sent = _parse_metric_lines(lines)
    assert sent["movierec_requests"] == EXPECTED_REQUESTS
    assert sent["movierec_client_errors"] == EXPECTED_ERRORS
    handler_ms = sent["movierec_handler_ms"]
    assert set(handler_ms) == {(k,) for k in KINDS}
    assert all(ms > 0 for ms in handler_ms.values())
    # rating and pairs share one call (one forward pass): the same time per request.
    assert handler_ms[("rating",)] / 2 == pytest.approx(handler_ms[("pairs",)] / 2)


def _parse_metric_lines(lines: list[str]) -> dict[str, Counter]:
    """[METRICS]name.unit:value|#dim:value,...|#type:COUNTER|... -> {name: {dims: total}}"""
    out: dict[str, Counter] = {name: Counter() for name in METRICS}
    for line in lines:
        match = re.match(r"\[METRICS\](\w+)\.\w*:([0-9.]+)\|#([^|]*)\|#type:COUNTER", line)
        if match and match[1] in out:
            dims = dict(pair.split(":", 1) for pair in match[3].split(","))
            assert dims.pop("ModelName") == "movierec" and dims.pop("Level") == "Model"
            out[match[1]][tuple(dims.values())] += float(match[2])
    return out


def scrape(server) -> dict[str, Counter]:
    """movierec's counters on the server's metrics port: {name: {label values: value}}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{server.metrics_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    out: dict[str, Counter] = {name: Counter() for name in METRICS}
    for family in text_string_to_metric_families(text):
        if family.name not in out:
            continue
        # TorchServe writes counters without the _total suffix; the parser adds it.
        assert family.type == "counter"
        for sample in family.samples:
            labels = dict(sample.labels)
            if labels.pop("ModelName") != "movierec":
                continue  # the bulk endpoint's own series
            assert labels.pop("Level") == "Model"
            labels.pop("Hostname")
            out[family.name][tuple(labels.values())] += sample.value
    return out


def _moved(before: Counter, after: Counter) -> dict:
    return {k: round(after[k] - before[k], 6) for k in after if after[k] != before[k]}


@pytest.mark.integration
def test_prometheus_counts_move_by_what_was_sent(server, artifact_dir):
    from model.recommender import Recommender

    rec = Recommender.from_artifact(artifact_dir)
    api = MovieRecClient(server.url, key_file=server.key_file)
    before = scrape(server)
    for row in _rows(rec):
        body = row.get("body", row.get("data"))
        if isinstance(body, bytes):
            status, _ = _post_raw(api, body)
        else:
            status, _ = api.request("POST", "/predictions/movierec", body)
        assert status in (200, 400, 404)
    # The worker sends its metrics as log lines that the frontend reads: wait for the last.
    deadline = time.monotonic() + 30
    while True:
        after = scrape(server)
        moved = {name: _moved(before[name], after[name]) for name in METRICS}
        if moved["movierec_requests"] == EXPECTED_REQUESTS or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert moved["movierec_requests"] == EXPECTED_REQUESTS
    assert moved["movierec_client_errors"] == EXPECTED_ERRORS
    assert {k for k, ms in moved["movierec_handler_ms"].items() if ms > 0} == {(k,) for k in KINDS}


def _post_raw(api: MovieRecClient, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(
        f"{api.url}/predictions/movierec",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {api.token}", "Content-Type": "text/plain"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class _FakeMetrics:
    """Records what TorchServe's metrics cache would be asked to send, one call per line."""

    def __init__(self):
        self.lines: list[tuple[str, float, tuple]] = []

    def add_metric(self, name, value, unit, idx, dimensions, metric_type):
        self.lines.append((name, value, tuple(d.value for d in dimensions)))


def test_the_recorder_sums_batches_into_one_line_per_label_set():
    from handler.metrics import Recorder

    fake = _FakeMetrics()
    recorder = Recorder(interval=3600)  # the thread would wait an hour: only flush() sends
    for _ in range(50):
        batch = [("rating", 200, None)] * 3 + [("top_k", 404, "user_id")]
        recorder.add(fake, batch, {"rating": 0.5, "top_k": 2.0})
    assert fake.lines == []
    recorder.flush()
    assert sorted(fake.lines) == sorted(
        [
            ("movierec_client_errors", 50, ("user_id", "404")),
            ("movierec_handler_ms", 75.0, ("rating",)),
            ("movierec_handler_ms", 100.0, ("top_k",)),
            ("movierec_requests", 150, ("rating", "200")),
            ("movierec_requests", 50, ("top_k", "404")),
        ]
    )
    recorder.flush()  # nothing new: nothing sent
    assert len(fake.lines) == 5


def test_the_recorder_sends_by_itself_and_at_every_batch_when_asked():
    from handler.metrics import Recorder

    at_once = _FakeMetrics()
    Recorder(interval=0).add(at_once, [("rating", 200, None)], {"rating": 1.0})
    assert ("movierec_requests", 1, ("rating", "200")) in at_once.lines

    fake = _FakeMetrics()
    Recorder(interval=0.05).add(fake, [("similar", 200, None)], {"similar": 1.0})
    deadline = time.monotonic() + 30  # the thread's first send, on a busy machine
    while not fake.lines and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ("movierec_requests", 1, ("similar", "200")) in fake.lines
