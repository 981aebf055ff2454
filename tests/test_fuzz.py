"""Integration: a short fuzz run (loadtest/scenarios/fuzz.py) at the session's TorchServe: every
malformed request, of every kind and field, gets a 4xx with a JSON error naming the field, and
every valid one (ratings, lists at several novelty values, explained lists, title searches,
charts) its right answer, computed offline; no 5xx."""

from __future__ import annotations

import pytest

from loadtest.scenarios.fuzz import run
from model.recommender import Recommender

pytestmark = pytest.mark.integration


def test_a_short_fuzz_run_gets_no_5xx_and_every_right_answer(server, artifact_dir):
    rec = Recommender.from_artifact(artifact_dir)
    result = run(server.url, server.token(), rec, bad=300, good=150, threads=4, seed=1)
    assert result["problems"] == []
    statuses = result["statuses"]
    assert statuses[("good", 200)] == 150
    assert sum(n for (kind, status), n in statuses.items() if kind == "bad") == 300
    assert all(400 <= status < 500 for kind, status in statuses if kind == "bad")
