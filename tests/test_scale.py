"""The scale measurement end to end at a tiny size: a generated artifact archived into a .mar,
its own TorchServe started on free ports, and requests that must all be answered right.
Structure and sanity only: timings are never judged here."""

from __future__ import annotations

import json

import pytest
import yaml

from loadtest.scenarios import scale
from train import archive

pytestmark = pytest.mark.integration


def test_a_tiny_run_reports_every_figure(tmp_path):
    out = tmp_path / "scale.md"
    argv = ["--users", "300", "--movies", "200", "--code-dim", "8", "--requests", "20"]
    assert scale.main([*argv, "--warmup", "5", "--out", str(out)]) == 0

    result = json.loads(out.with_suffix(".json").read_text())
    assert result["settings"] | {"served": None} == {
        "users": 300,
        "movies": 200,
        "code_dim": 8,
        "requests": 20,
        "warmup": 5,
        "seed": 0,
        "k": 10,
        "served": None,
    }
    build, startup = result["build"], result["startup"]
    assert build["mar_bytes"] > build["weights_bytes"] > 0
    assert build["archive_s"] > 0 and startup["ready_s"] > 0
    workers = yaml.safe_load(archive.MODEL_CONFIG.read_text())["minWorkers"]
    assert startup["workers"] == workers
    for key in ("worker_rss_mib", "worker_rss_after_requests_mib", "worker_peak_mib"):
        assert len(startup[key]) == workers and all(mib > 0 for mib in startup[key]), key
    assert startup["frontend_rss_mib"] > 0
    # Every request was answered right (a wrong answer fails the run before any figure).
    top_k = result["top_k"]
    assert top_k["requests"] == len(top_k["samples_ms"]) == 20
    assert 0 < top_k["p50_ms"] <= top_k["p95_ms"] <= top_k["max_ms"]
    assert result["rating"]["requests"] == 20 and result["rating"]["p50_ms"] > 0
    assert result["pairs"] == {"pairs": 1000, "reps": 5, "p50_ms": result["pairs"]["p50_ms"]}

    text = out.read_text()
    assert "300 users x 200 movies, code_dim 8" in text
    assert f"{build['mar_bytes']:,} bytes" in text
    assert f"{workers} of {workers} workers READY" in text
    assert "--code-dim 8" in text


def test_wrong_answers_fail_the_run():
    top_k = {"user_id": 7, "k": scale.K}
    recs = [{"movie_id": m} for m in range(scale.K)]
    assert scale._top_k_answered(top_k, {"user_id": 7, "recommendations": recs})
    assert not scale._top_k_answered(top_k, {"user_id": 7, "recommendations": recs[:-1]})
    assert not scale._top_k_answered(top_k, {"user_id": 8, "recommendations": recs})
    assert not scale._top_k_answered(top_k, {"error": {"status": 404}})
    assert scale._pairs_answered({"pairs": [[1, 2]] * 3}, {"ratings": [3.5] * 3})
    assert not scale._pairs_answered({"pairs": [[1, 2]] * 3}, {"ratings": [3.5] * 2})
    assert scale._rating_answered({}, {"rating": 3.5})
    assert not scale._rating_answered({}, {"error": {"status": 400}})
