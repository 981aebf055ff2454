"""Package a trained artifact into TorchServe model archives (.mar).

    python -m train.archive --artifact artifacts/ml-100k --export-path model_store

writes two archives of the same model: ``movierec.mar``, the interactive endpoint
(handler/model-config.yaml), and ``movierec-bulk.mar``, the endpoint for large requests
(handler/model-config-bulk.yaml). TorchServe reads workers, batching and the job queue from the
archive itself, so each endpoint's settings travel in its own archive. Each holds the weights,
the artifact's config.json (model sizes, training settings, data source, versions and git
commit), vocab.npz, metrics.json, the ``model`` and ``handler`` packages and its
model-config.yaml. ``--model-name NAME --config-file FILE`` builds one archive only.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from model import __version__, artifact, console
from model.errors import DataError

log = logging.getLogger("archive")

REPO = Path(__file__).resolve().parent.parent
HANDLER = REPO / "handler" / "movierec_handler.py"
MODEL_CONFIG = REPO / "handler" / "model-config.yaml"
BULK_CONFIG = REPO / "handler" / "model-config-bulk.yaml"
# The registrations `make archive` builds, each with its own settings (docs/operations.md).
ENDPOINTS = {"movierec": MODEL_CONFIG, "movierec-bulk": BULK_CONFIG}


def _archiver() -> str:
    """torch-model-archiver of this interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).parent / "torch-model-archiver"
    found = str(beside) if beside.exists() else shutil.which("torch-model-archiver")
    if not found:
        raise DataError("torch-model-archiver not found: run `make install` first")
    return found


def build(
    artifact_dir: str | Path,
    export_path: str | Path,
    model_name: str = "movierec",
    version: str = __version__,
    config_file: str | Path = MODEL_CONFIG,
    handler: str | Path = HANDLER,
) -> Path:
    """Build ``export_path/<model_name>.mar`` from an artifact folder and return its path.

    ``handler`` is movierec's own unless another is given (the benchmark packs its baselines).
    """
    artifact_dir, export_path = Path(artifact_dir), Path(export_path)
    missing = [f for f in artifact.FILES if not (artifact_dir / f).is_file()]
    if missing:
        raise DataError(f"{artifact_dir}: missing {', '.join(missing)}; train first (make train)")
    export_path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # The archiver copies a folder's *contents* into the archive root, so stage the
        # packages as subfolders of one folder: they arrive as importable packages.
        stage = Path(tmp) / "extra"
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for package in ("model", "handler"):
            shutil.copytree(REPO / package, stage / package, ignore=ignore)
        for name in (artifact.CONFIG, artifact.VOCAB, artifact.METRICS, artifact.RANKER):
            if (artifact_dir / name).is_file():  # an older artifact has no ranking model
                shutil.copy2(artifact_dir / name, stage / name)
        command = [
            _archiver(),
            "--model-name",
            model_name,
            "--version",
            version,
            "--serialized-file",
            str(artifact_dir / artifact.WEIGHTS),
            "--handler",
            str(handler),
            "--extra-files",
            str(stage),
            "--config-file",
            str(config_file),
            "--export-path",
            str(export_path),
            "--force",
        ]
        log.info("running %s", " ".join(command))
        # The archiver stages files in $TMPDIR/<model_name> and deletes that folder before and
        # after: two archives of one model name at once (tests beside a benchmark) would
        # delete each other's files. A private TMPDIR keeps each build to itself.
        subprocess.run(command, check=True, env={**os.environ, "TMPDIR": tmp})
    mar = export_path / f"{model_name}.mar"
    log.info("wrote %s (%.1f MB, version %s)", mar, mar.stat().st_size / 1e6, version)
    return mar


def build_endpoints(
    artifact_dir: str | Path, export_path: str | Path, version: str = __version__
) -> list[Path]:
    """Build one archive per entry of :data:`ENDPOINTS` (interactive and bulk) from one
    artifact; returns their paths, the interactive one first."""
    return [
        build(artifact_dir, export_path, name, version, config)
        for name, config in ENDPOINTS.items()
    ]


def main(argv: list[str] | None = None) -> int:
    p = console.parser("python -m train.archive", __doc__)
    p.add_argument("--artifact", default="artifacts/ml-100k", help="folder written by train")
    p.add_argument("--export-path", default="model_store", help="where the .mar goes")
    p.add_argument(
        "--model-name", help=f"build this archive only (default: {', '.join(ENDPOINTS)})"
    )
    p.add_argument("--version", default=__version__, help="model version recorded in the .mar")
    p.add_argument(
        "--config-file", help="model-config.yaml of --model-name (default: the endpoint's own)"
    )
    args = p.parse_args(argv)
    if args.config_file and not args.model_name:
        p.error("--config-file needs --model-name")
    try:
        if args.model_name:
            config = args.config_file or ENDPOINTS.get(args.model_name, MODEL_CONFIG)
            build(args.artifact, args.export_path, args.model_name, args.version, config)
        else:
            build_endpoints(args.artifact, args.export_path, args.version)
    except (DataError, subprocess.CalledProcessError) as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
