"""Start ``python -m web`` on a free port in front of a given model server, and always stop it.

    with local_torchserve(store, ["movierec"]) as server:
        with local_web(server.url, server.key_file, "artifacts/ml-100k", log) as url:
            ...  # the page at url

For the browser tests, the fuzz scenario and :mod:`web.measure`: the web app runs in its own
process, as ``make serve`` runs it, so that it shares no interpreter with the load it is given.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loadtest.server import free_ports
from web.__main__ import answers

REPO = Path(__file__).resolve().parent.parent


class WebError(RuntimeError):
    """The web app did not start."""


@contextmanager
def local_web(
    model_url: str,
    key_file: str | Path,
    artifact: str | Path,
    log_file: str | Path,
    timeout: float = 60.0,
) -> Iterator[str]:
    """``python -m web`` on a free loopback port; yields the page's URL (no trailing slash).

    Parameters
    ----------
    model_url : str
        The model server's inference address.
    key_file : path
        Its key_file.json.
    artifact : path
        The artifact folder the served model was built from (genres, decades, stars).
    log_file : path
        Where the web app's output goes.
    timeout : float
        Seconds to wait for it to answer.
    """
    (port,) = free_ports(1)
    command = [
        *(sys.executable, "-m", "web", "--port", str(port), "--url", model_url),
        *("--key-file", str(Path(key_file).resolve()), "--artifact", str(Path(artifact).resolve())),
    ]
    with open(log_file, "ab") as out:
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not answers("127.0.0.1", port):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = Path(log_file).read_text(errors="replace")[-2000:]
                raise WebError(f"the web app did not start on port {port}:\n{tail}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
