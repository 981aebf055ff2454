"""The soak tool (loadtest/scenarios/soak.py): its memory verdicts on series with known answers, its
report files, and (integration) a 75-second run with 1-minute keys against a private server."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from loadtest.scenarios import soak


def test_memory_is_judged_over_the_last_two_thirds():
    flat = [300.0] * 9
    warm_up = [100.0, 200.0, 300.0] + [300.0] * 6  # growth in the first third is left out
    leak = [300.0] * 6 + [340.0] * 3  # +40 MiB, 13%: over 10%
    big = [2000.0] * 6 + [2060.0] * 3  # +60 MiB, 3%: over 50 MiB
    verdicts = soak.judge_memory(
        {"worker 1": flat, "worker 2": warm_up, "worker 3": leak, "worker 4": big}
    )
    assert [v["ok"] for v in verdicts] == [True, True, False, False]
    assert verdicts[2]["growth"] == pytest.approx(40)  # medians of first and last three
    # The JVM frontend gets more room: +40 MiB of 300 (13%) is within 25% and 150 MiB.
    (frontend,) = soak.judge_memory({"frontend": leak})
    assert frontend["ok"] is True
    (short,) = soak.judge_memory({"worker 1": [300.0] * 5})
    assert short["ok"] is None  # too few samples to judge


def test_report_files(tmp_path):
    minutes = [
        {"seconds": "60.0", "rps": "100.5", "p99_ms": "20", "requests": "6030", "failures": "0"}
        | {"refreshed": "3"},
        {"seconds": "30.0", "rps": "99.0", "p99_ms": "25", "requests": "2970", "failures": "0"}
        | {"refreshed": "0"},
    ]
    samples = [
        {"frontend_rss_mib": 250.0, "worker_pids": [11, 12], "worker_rss_mib": [300.0, 301.0]}
    ]
    rows = soak.combine(minutes, samples, 60.0)
    assert [r["minute"] for r in rows] == [1.0, 1.5]
    assert rows[1]["worker2_rss_mib"] == "301.0"  # the last interval takes the last sample
    soak.write_csv(rows, tmp_path / "soak.csv")
    with open(tmp_path / "soak.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    soak.plot(rows, tmp_path / "soak.png", "test")
    assert (tmp_path / "soak.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.integration
def test_a_short_soak_passes_and_writes_its_report(tmp_path, served_mar):
    """75 s with 1-minute keys (renewed every 30 s), the whole mix at 2 req/s per user."""
    report = tmp_path / "soak"
    argv = [
        *("--mar", str(served_mar), "--duration", "75s", "--interval", "15"),
        *("--users", "10", "--user-rps", "2", "--setting", "token_expiration_min=1"),
        *("--report-dir", str(report), "--locust-dir", str(tmp_path / "locust")),
    ]
    assert soak.main(argv) == 0, (report / "soak.md").read_text()
    with open(report / "soak.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 5 and all(r["failures"] == "0" for r in rows)  # 5 x 15 s
    assert {"frontend_rss_mib", "worker1_rss_mib", "worker2_rss_mib"} <= set(rows[0])
    assert all(float(r["frontend_rss_mib"]) > 0 for r in rows)
    text = (report / "soak.md").read_text()
    assert "**Verdict: passed.**" in text and "too short to judge" in text
    renewals = text.split("| requests |")[1].splitlines()[2].split("|")[5]
    assert int(renewals.split(",")[0]) >= 2, text  # inference key renewed at ~30 s and ~60 s
    assert Path(report / "soak.png").stat().st_size > 10_000
