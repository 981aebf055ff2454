"""Start a private TorchServe on free ports and always stop it: for tests, load runs and benches.

    with local_torchserve(model_store, ["movierec"]) as server:
        MovieRecClient(server.url, key_file=server.key_file).recommend(196)

The server runs from a copy of ``config.properties`` in which only the addresses change: every
port (HTTP, management, metrics, gRPC, the workers' sockets) is a free one, so it never meets a
developer's own server on 8080, and its home folder doubles as ``TMPDIR`` (TorchServe's pid file
lives there), so ``torchserve --stop`` elsewhere cannot touch it, nor it them. It is started in
its own process group, which is killed on exit whatever happened.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config.properties"
TORCHSERVE = Path(sys.executable).parent / "torchserve"


# The registration `make archive` builds beside movierec.mar for large requests.
BULK_MODEL = "movierec-bulk"


def endpoints(mar: str | Path) -> tuple[list[str], str]:
    """``(model_names, load_models)`` for :func:`local_torchserve` serving the archive ``mar``
    under its own name and, when ``movierec-bulk.mar`` was built beside it (``make archive``),
    the bulk endpoint too, as ``make serve`` does."""
    mar = Path(mar)
    names, files = [mar.stem], [mar.name]
    bulk = mar.parent / f"{BULK_MODEL}.mar"
    if bulk.is_file() and bulk.name != mar.name:
        names.append(BULK_MODEL)
        files.append(bulk.name)
    return names, ",".join(files)


class ServerError(RuntimeError):
    """TorchServe could not be started, or its models never became ready."""


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports on 127.0.0.1 that are free right now."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def read_config(path: str | Path = CONFIG) -> dict[str, str]:
    """``key=value`` lines of a TorchServe config.properties (comments skipped)."""
    pairs = (
        line.split("=", 1)
        for line in Path(path).read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    )
    return {k.strip(): v.strip() for k, v in pairs}


@dataclass
class Server:
    """A running private TorchServe: its addresses, folder, config and process."""

    url: str
    management_url: str
    metrics_url: str
    home: Path
    config: dict[str, str]
    process: subprocess.Popen

    @property
    def key_file(self) -> Path:
        """TorchServe writes its tokens to key_file.json in the folder it started from."""
        return self.home / "key_file.json"

    def token(self, kind: str = "inference") -> str:
        return json.loads(self.key_file.read_text())[kind]["key"]

    def worker_pids(self) -> list[int]:
        """Process ids of the Python model workers (children of the Java frontend)."""
        return [p.pid for p in self.processes()[1]]

    def processes(self) -> tuple[list, list]:
        """``(frontend, workers)`` as ``psutil.Process`` lists: the launcher and Java, and the
        Python model workers."""
        import psutil  # only the benchmarks need it, and the tests, which have it

        root = psutil.Process(self.process.pid)
        frontend: list = [root]  # psutil.Process, untyped
        workers: list = []
        for p in root.children(recursive=True):
            is_worker = any("model_service_worker" in part for part in p.cmdline())
            (workers if is_worker else frontend).append(p)
        return frontend, workers

    def describe(self, model: str = "movierec") -> dict:
        """The management API's description of ``model``'s default version (its workers...)."""
        url = f"{self.management_url}/models/{model}"
        # The management API answers with a list of the model's versions: the default one here.
        (described,) = cast(list[dict], _get_json(url, self.token("management")))
        return described

    def log_tail(self, lines: int = 40) -> str:
        path = self.home / "torchserve.out"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _get_json(url: str, token: str, timeout: float = 5.0) -> object:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def wait_ready(server: Server, model_names: list[str], timeout: float = 120.0) -> None:
    """Wait until each model has at least ``minWorkers`` workers READY (management API).

    Asking the management API rather than sending a prediction works for any handler, the
    benchmark's echo and naive handlers included.
    """
    deadline = time.monotonic() + timeout
    last = "no key file yet"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerError(f"TorchServe exited with {server.process.returncode}")
        try:
            ready = True
            for name in model_names:
                described = server.describe(name)
                workers = described.get("workers", [])
                up = sum(w.get("status") == "READY" for w in workers)
                if up < max(1, int(described.get("minWorkers", 1))):
                    ready, last = False, f"{name}: {up} of {len(workers)} workers ready"
            if ready:
                return
        except (OSError, ValueError, KeyError) as exc:  # not started, no key file yet, 404
            last = str(exc)
        time.sleep(0.25)
    raise ServerError(f"models {model_names} not ready after {timeout:.0f} s: {last}")


def _stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def private_config(
    model_store: str | Path,
    model_names: list[str],
    load_models: str | None = None,
    config_file: str | Path = CONFIG,
    settings: dict[str, str] | None = None,
) -> dict[str, str]:
    """The settings of ``config_file`` with ``settings`` applied, every port a free loopback
    one, and every path absolute (see :func:`local_torchserve` for the parameters)."""
    http, mgmt, metrics, grpc, grpc_mgmt, worker = free_ports(6)
    config = read_config(config_file) | (settings or {})
    config.update(
        {
            "inference_address": f"http://127.0.0.1:{http}",
            "management_address": f"http://127.0.0.1:{mgmt}",
            "metrics_address": f"http://127.0.0.1:{metrics}",
            "grpc_inference_port": str(grpc),
            "grpc_management_port": str(grpc_mgmt),
            # Workers talk to the frontend over /tmp/.ts.sock.<port>: keep clear of other servers.
            "initial_worker_port": str(worker),
            "model_store": str(Path(model_store).resolve()),
            "load_models": load_models or ",".join(f"{n}.mar" for n in model_names),
        }
    )
    if config.get("metrics_config"):  # a relative path means: beside the config file
        beside = Path(config_file).resolve().parent
        config["metrics_config"] = str(beside / config["metrics_config"])
    return config


@contextmanager
def local_torchserve(
    model_store: str | Path,
    model_names: list[str],
    load_models: str | None = None,
    home: str | Path | None = None,
    config_file: str | Path = CONFIG,
    timeout: float = 120.0,
    settings: dict[str, str] | None = None,
) -> Iterator[Server]:
    """Start TorchServe on free loopback ports, wait for the models, stop it on exit.

    Parameters
    ----------
    model_store : path
        Folder holding the ``.mar`` files.
    model_names : list of str
        Models to wait for; they must be loaded at start.
    load_models : str, optional
        TorchServe's ``load_models`` (default: ``<name>.mar`` for each of ``model_names``).
    home : path, optional
        Folder to run in (logs, key_file.json, pid file); a temporary one, removed on exit,
        when left out.
    config_file : path
        The config.properties whose settings are kept (only addresses are replaced).
    settings : dict, optional
        Settings that replace the config file's (e.g. ``{"enable_model_api": "true"}``).
    """
    if not shutil.which("java"):
        raise ServerError("java is not on PATH: TorchServe needs Java 11+ (see README)")
    owns_home = home is None
    home = Path(tempfile.mkdtemp(prefix="movierec-ts-") if home is None else home)
    home.mkdir(parents=True, exist_ok=True)
    config = private_config(model_store, model_names, load_models, config_file, settings)
    (home / "config.properties").write_text("".join(f"{k}={v}\n" for k, v in config.items()))
    # TMPDIR isolates TorchServe's pid file, so a developer's own server is left alone.
    # TS_CONFIG_FILE (exported by the venv's activate script) would win over --ts-config.
    env = {k: v for k, v in os.environ.items() if k != "TS_CONFIG_FILE"} | {"TMPDIR": str(home)}
    with open(home / "torchserve.out", "wb") as out:
        process = subprocess.Popen(
            [
                str(TORCHSERVE),
                "--start",
                "--foreground",
                "--ts-config",
                "config.properties",
                "--ncs",
            ],
            cwd=home,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(
        url=config["inference_address"],
        management_url=config["management_address"],
        metrics_url=config["metrics_address"],
        home=home,
        config=config,
        process=process,
    )
    log.info("starting TorchServe on %s (home %s)", server.url, home)
    try:
        try:
            wait_ready(server, model_names, timeout)
        except ServerError as exc:
            log_file = home / "torchserve.out"
            raise ServerError(f"{exc}\n--- {log_file} ---\n{server.log_tail()}") from None
        yield server
    finally:
        _stop(process)
        log.info("stopped TorchServe on %s", server.url)
        if owns_home:
            shutil.rmtree(home, ignore_errors=True)


@contextmanager
def key_supervisor(server: Server) -> Iterator[subprocess.Popen]:
    """Run ``python -m client.keys`` against ``server`` (log: ``keys.log`` in its home) until
    the block ends; it renews the keys before they expire, as ``make serve`` does."""
    lifetime = server.config.get("token_expiration_min", "60")
    with open(server.home / "keys.log", "ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "client.keys",
                "--url",
                server.management_url,
                "--key-file",
                str(server.key_file),
                "--lifetime-min",
                lifetime,
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def answers(url: str, token: str, timeout: float = 2.0) -> bool:
    """Whether a TorchServe at ``url`` accepts ``token`` and says it is healthy."""
    request = urllib.request.Request(
        f"{url.rstrip('/')}/ping", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read()).get("status") == "Healthy"
    except (OSError, ValueError, urllib.error.URLError):
        return False
