"""The load-test kit: request bodies and answer checks offline, the SLO verdict, and a short
low-load Locust run of the real locustfile against the session's TorchServe."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass

import numpy as np
import pytest

from handler.answering import answer_batch
from handler.parsing import Limits
from loadtest import slo, traffic
from loadtest.run import run_locust, seconds
from loadtest.scenarios import upgrade
from model.recommender import Recommender
from model.vocab import Vocabulary


@pytest.fixture(scope="module")
def recommender(artifact_dir) -> Recommender:
    return Recommender.from_artifact(artifact_dir)


@pytest.fixture(scope="module")
def catalogue(served_mar) -> traffic.Catalogue:
    return traffic.Catalogue.from_mar(served_mar)


def test_ids_are_drawn_by_popularity():
    # User 1 rated movie 10; user 2 movies 10, 20; user 3 movies 10, 20, 30; nobody rated 40.
    vocab = Vocabulary(
        user_ids=np.array([1, 2, 3]),
        movie_ids=np.array([10, 20, 30, 40]),
        titles=np.array(["a", "b", "c", "d"]),
        genre_names=("Drama",),
        genres=np.zeros((4, 1), np.uint8),
        rated_indptr=np.array([0, 1, 3, 6]),
        rated_items=np.array([0, 0, 1, 0, 1, 2], np.int32),
    )
    cat = traffic.Catalogue(vocab, 1.0, 5.0)
    rng = np.random.default_rng(0)
    n = 6000
    users = np.bincount([cat.user(rng) for _ in range(n)], minlength=4)[1:]
    movies = np.bincount(cat.movies(rng, n), minlength=41)[[10, 20, 30, 40]]
    assert users / n == pytest.approx([1 / 6, 2 / 6, 3 / 6], abs=0.02)
    assert movies / n == pytest.approx([3 / 6, 2 / 6, 1 / 6, 0], abs=0.02)
    assert movies[3] == 0
    assert cat.rated(2) == {10, 20}


@pytest.mark.parametrize("endpoint", traffic.ENDPOINTS + traffic.BULK_ENDPOINTS)
def test_the_handlers_answers_pass_their_checks(endpoint, catalogue, recommender):
    call = endpoint(catalogue)
    rng = np.random.default_rng(1)
    bodies = [call.body(rng) for _ in range(20)]
    answers = answer_batch(recommender, [{"body": b} for b in bodies], Limits()).answers
    for body, (status, answer) in zip(bodies, answers):
        assert status == 200, answer
        assert call.check(body, json.loads(json.dumps(answer))) is None


def test_malformed_answers_fail_their_checks(catalogue, recommender):
    rng = np.random.default_rng(2)
    rating = traffic.SingleRating(catalogue)
    body = rating.body(rng)
    (_, good), *_ = answer_batch(recommender, [{"body": body}], Limits()).answers
    for bad in (
        {**good, "rating": 7.5},
        {**good, "rating": None},
        {**good, "user_id": body["user_id"] + 1},
        {k: v for k, v in good.items() if k != "rating"},
        [good],
    ):
        assert rating.check(body, bad), bad

    top_k = traffic.TopK(catalogue)
    body = top_k.body(rng)
    (_, good), *_ = answer_batch(recommender, [{"body": body}], Limits()).answers
    recs = good["recommendations"]
    rated_movie = next(iter(catalogue.rated(body["user_id"])))
    for bad in (
        {**good, "recommendations": recs[:-1]},
        {**good, "recommendations": recs[::-1]},
        {**good, "recommendations": [{**recs[0], "movie_id": rated_movie}, *recs[1:]]},
        {**good, "recommendations": [recs[0], recs[0], *recs[2:]]},
        {**good, "recommendations": [{**recs[0], "title": None}, *recs[1:]]},
        {**good, "recommendations": [{**recs[0], "rating": 9.0}, *recs[1:]]},
        {**good, "ranked_by": "stars"},
    ):
        assert top_k.check(body, bad), bad

    pairs = traffic.RatingPairs(catalogue)
    body = pairs.body(rng)
    assert pairs.check(body, {"ratings": [3.0] * (len(body["pairs"]) - 1)})
    n = len(body["pairs"])
    assert pairs.check(body, {"ratings": [3.0] * n}) is None
    for wrong in ("3.0", None, 9.5, 0.2, float("nan")):
        assert pairs.check(body, {"ratings": [3.0] * (n - 1) + [wrong]}), wrong
    assert traffic.check_echo(body, body) is None and traffic.check_echo(body, {"x": 1})


@dataclass
class FakeStats:
    name: str
    num_requests: int
    num_failures: int
    p95: float
    p99: float

    def get_response_time_percentile(self, percent: float) -> float:
        return self.p95 if percent == 0.95 else self.p99


def test_slo_violations_name_what_was_missed():
    objective = slo.SLO(p95_ms=50, p99_ms=100)
    assert slo.violations([FakeStats("rating", 100, 0, 50, 100)], objective) == []
    missed = slo.violations(
        [FakeStats("top_k", 100, 0, 51, 20), FakeStats("Aggregated", 100, 2, 10, 101)], objective
    )
    assert missed == [
        "top_k: p95 51 ms > 50 ms",
        "Aggregated: 2 failed requests (max 0)",
        "Aggregated: p99 101 ms > 100 ms",
    ]


@pytest.mark.parametrize("text,value", [("90", 90), ("30s", 30), ("5m", 300), ("1h2m3s", 3723)])
def test_timespans(text, value):
    assert seconds(text) == value


@pytest.mark.parametrize("text", ["", "5 minutes", "m", "-3s"])
def test_bad_timespans_are_refused(text):
    with pytest.raises(ValueError, match="timespan"):
        seconds(text)


@pytest.mark.integration
def test_locustfile_smoke_run(server, served_mar, tmp_path):
    """A few seconds of every user class, the bulk clients' too, at a few requests per second:
    no failures (a wrong answer, or a 413 from the wrong endpoint, is a failure too) and every
    class sent requests. Latency is not judged here."""
    every = traffic.ENDPOINTS + traffic.BULK_ENDPOINTS
    one_each = [{"user_class_name": e.__name__, "fixed_count": 1} for e in every]
    code = run_locust(
        server.url,
        server.key_file,
        served_mar,
        tmp_path / "smoke",
        users=len(one_each),
        spawn_rate=len(one_each),
        duration="6s",  # spawning 7 classes can take a while on a busy machine
        extra=[
            *("--config-users", json.dumps(one_each), "--user-rps", "4"),
            *("--slo-p95-ms", "inf", "--slo-p99-ms", "inf"),
        ],
        env={"MOVIEREC_BULK": "1"},
    )
    with open(tmp_path / "smoke_stats.csv", newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    assert code == 0
    for endpoint in every:
        assert int(rows[endpoint.name]["Request Count"]) > 0, endpoint.name
        assert int(rows[endpoint.name]["Failure Count"]) == 0, endpoint.name


@pytest.mark.integration  # loadtest.scenarios.upgrade starts its own TorchServe (Java)
@pytest.mark.parametrize("procedure", ["runtime", "staged"])
def test_model_upgrade_and_rollback_under_load(
    procedure, artifact_dir, served_mar, tmp_path, capsys
):
    """A second version comes in (registered at run time, or loaded at start with the model
    API off), becomes the default and is rolled back while Locust runs: the probe sees both
    versions answer, and no request fails."""
    args = ["--mar", str(served_mar), "--artifact", str(artifact_dir), "--new-version", "2.0"]
    args += ["--users", "2", "--duration", "30", "--settle", "3"]
    args += ["--report-dir", str(tmp_path), *(["--staged"] if procedure == "staged" else [])]
    code = upgrade.main(args)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "failed: 0" in out
    answered = out.split("answered by ")[1].split(", failed")[0]
    counts = dict(re.findall(r"'([^']+)': (\d+)", answered))
    assert set(counts) == {upgrade.mar_version(served_mar), "2.0"}
    assert all(int(n) > 0 for n in counts.values()), out
