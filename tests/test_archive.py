"""train.archive: builds beside each other leave each other alone, and the .mar carries only
the served code, which runs on its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from train import archive


def test_a_build_never_touches_the_shared_staging_folder(artifact_dir, tmp_path, monkeypatch):
    # torch-model-archiver stages in $TMPDIR/<model name> and deletes it first: another build
    # of the same name at that moment would lose its files.
    shared = tmp_path / "tmp"
    other_build = shared / "movierec" / "weights.pt"
    other_build.parent.mkdir(parents=True)
    other_build.write_bytes(b"another build's staged file")
    monkeypatch.setenv("TMPDIR", str(shared))
    monkeypatch.setattr(tempfile, "tempdir", str(shared))

    mar = archive.build(artifact_dir, tmp_path / "model_store")

    assert other_build.read_bytes() == b"another build's staged file"
    with zipfile.ZipFile(mar) as packed:
        assert {"weights.pt", "vocab.npz", "model-config.yaml"} <= set(packed.namelist())


OFFLINE_PACKAGES = ("train", "loadtest", "client", "tests")

# Run inside the unpacked archive, as a TorchServe worker would: the handler and the served
# core import, and the Recommender loads the artifact, with nothing offline among the modules.
WORKER_IMPORTS = """
import json, sys
import movierec_handler
from model.recommender import Recommender
Recommender.from_artifact(".")
import model
print(json.dumps({"modules": sorted(sys.modules), "model_file": model.__file__}))
"""


def _unpack(mar, folder):
    with zipfile.ZipFile(mar) as packed:
        packed.extractall(folder)
        return packed.namelist()


def test_the_archive_packs_only_served_code(artifact_dir, tmp_path):
    mar = archive.build(artifact_dir, tmp_path / "model_store")
    names = _unpack(mar, tmp_path / "unpacked")

    code = [name for name in names if name.endswith(".py")]
    outside = [name for name in code if not name.startswith(("model/", "handler/"))]
    assert outside == ["movierec_handler.py"]  # the archiver's copy of --handler
    assert not [name for name in names if name.startswith(OFFLINE_PACKAGES)]


def test_the_served_code_loads_and_imports_nothing_offline(artifact_dir, tmp_path):
    unpacked = tmp_path / "unpacked"
    _unpack(archive.build(artifact_dir, tmp_path / "model_store"), unpacked)

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", WORKER_IMPORTS],
        cwd=unpacked,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = json.loads(out.stdout.splitlines()[-1])

    assert Path(loaded["model_file"]).resolve().is_relative_to(unpacked.resolve())
    offline = [m for m in loaded["modules"] if m.split(".")[0] in OFFLINE_PACKAGES]
    assert offline == []


def test_make_archive_builds_an_interactive_and_a_bulk_endpoint(artifact_dir, tmp_path):
    import yaml

    built = archive.build_endpoints(artifact_dir, tmp_path / "model_store")

    assert [m.name for m in built] == ["movierec.mar", "movierec-bulk.mar"]
    configs = {}
    for mar, (name, source) in zip(built, archive.ENDPOINTS.items()):
        with zipfile.ZipFile(mar) as packed:
            manifest = json.loads(packed.read("MAR-INF/MANIFEST.json"))
            # TorchServe reads the file the manifest names.
            configs[name] = yaml.safe_load(packed.read(manifest["model"]["configFile"]))
            weights = packed.read("weights.pt")
        assert manifest["model"]["modelName"] == name
        assert configs[name] == yaml.safe_load(source.read_text())
        assert weights == (artifact_dir / "weights.pt").read_bytes()  # one model, twice
    interactive, bulk = configs["movierec"], configs["movierec-bulk"]
    # The interactive endpoint's 413 names the bulk one, which takes everything it refuses.
    assert interactive["handler"]["bulk_model"] == "movierec-bulk"
    assert "bulk_model" not in bulk["handler"]
    for limit in ("max_pairs", "max_ratings", "max_k"):
        assert bulk["handler"][limit] >= interactive["handler"][limit]
    # Bulk work yields the CPU to the interactive workers.
    assert bulk["handler"]["nice"] > interactive["handler"].get("nice", 0)
    # TorchServe reads 0 as "unset" and then waits its default 100 ms for company.
    assert interactive["maxBatchDelay"] >= 1 and bulk["maxBatchDelay"] >= 1
