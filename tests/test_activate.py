"""The design's own command: after ``source .venv/bin/activate``, a plain ``torchserve --start``
reads config.properties (``make install`` exports TS_CONFIG_FILE in the activate script), and
the project's private servers are not thrown off by that variable."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client import MovieRecClient
from loadtest.server import TORCHSERVE, answers, local_torchserve, private_config

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("java") is None, reason="make install checks for java")
def test_make_install_exports_ts_config_file_once(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (venv / ".installed").touch()  # newer than requirements.txt: nothing to pip install
    for _ in range(2):  # a second install leaves one line, not two
        done = subprocess.run(
            ["make", "-s", "install", f"VENV={venv}"], cwd=REPO, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    script = (venv / "bin" / "activate").read_text()
    assert [line for line in script.splitlines() if "TS_CONFIG_FILE" in line] == [
        f'export TS_CONFIG_FILE="{REPO}/config.properties"  # movierec: TS_CONFIG_FILE'
    ]
    shown = subprocess.run(
        ["bash", "-c", f"source {venv}/bin/activate && echo $TS_CONFIG_FILE"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "TS_CONFIG_FILE"},
    )
    assert shown.stdout.strip() == str(REPO / "config.properties")


@pytest.mark.integration
def test_plain_torchserve_start_reads_ts_config_file(tmp_path, served_mar, monkeypatch):
    """``torchserve --start`` without flags, TS_CONFIG_FILE naming a private copy of the shipped
    config (free ports, its own TMPDIR so ``--stop`` finds this server only), then
    ``torchserve --stop``."""
    home = tmp_path / "home"
    home.mkdir()
    config = private_config(served_mar.parent, ["movierec"])
    config_file = tmp_path / "config.properties"
    config_file.write_text("".join(f"{k}={v}\n" for k, v in config.items()))
    env = {**os.environ, "TS_CONFIG_FILE": str(config_file), "TMPDIR": str(home)}
    out = home / "torchserve.out"
    with out.open("wb") as f:  # not a pipe: the daemon keeps it open
        start = subprocess.run([str(TORCHSERVE), "--start"], cwd=home, env=env, stdout=f, stderr=f)
    pid_file = home / ".model_server.pid"
    try:
        assert start.returncode == 0, out.read_text()
        api = MovieRecClient.connect(config["inference_address"], key_file=home / "key_file.json")
        assert len(api.recommend(101, k=2)) == 2
        pid = int(pid_file.read_text())
        with out.open("ab") as f:
            stop = subprocess.run([str(TORCHSERVE), "--stop"], cwd=home, env=env, stdout=f)
        assert stop.returncode == 0, out.read_text()
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.2)
        assert not _alive(pid), "torchserve --stop left the server running"
    finally:
        if pid_file.exists() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), 9)

    # With TS_CONFIG_FILE exported (an activated venv), a private server must still use its own
    # config: TorchServe lets the variable win over --ts-config.
    monkeypatch.setenv("TS_CONFIG_FILE", str(tmp_path / "no-such.properties"))
    with local_torchserve(served_mar.parent, ["movierec"]) as server:
        assert answers(server.url, server.token())


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
