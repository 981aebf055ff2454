"""train.archive: builds that run beside each other on one machine leave each other alone."""

from __future__ import annotations

import tempfile
import zipfile

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
