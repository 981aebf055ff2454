"""A server needs only the serving packages (requirements-serve.txt, pyproject's dependencies):
the handler, the web app, the client and the key supervisor load and answer with the training,
plotting and load-test libraries made impossible to import."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# What training, evaluation, plots and load tests bring; a serve-only install has none of them.
NOT_SERVED = ("pandas", "matplotlib", "implicit", "scipy", "threadpoolctl", "tqdm", "locust")

PROGRAM = """
import importlib.abc, json, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {refused!r}:
            raise ImportError(f"{{name}} is not installed on a serve-only machine")
        return None

sys.meta_path.insert(0, Refuse())
from ts.context import Context, RequestProcessor
from handler.movierec_handler import MovieRecHandler
import web.app, web.__main__, client.__main__, client.keys

ctx = Context("movierec", {artifact!r}, {{}}, 1, None, "0.12.0")
handler = MovieRecHandler()
handler.initialize(ctx)
rec = handler.recommender
rows = [
    {{"body": {{"user_id": int(rec.vocab.user_ids[0]), "k": 3, "explain": True}}}},
    {{"body": {{"ratings": {{str(int(rec.vocab.movie_ids[0])): 5}}, "novelty": 0.5}}}},
    {{"body": {{"search": str(rec.vocab.titles[0])}}}},
]
ctx.request_processor = [RequestProcessor({{}}) for _ in rows]
out = handler.handle(rows, ctx)
print(json.dumps([ctx.get_response_status(i)[0] for i in range(len(rows))]))
"""


def run(artifact: Path, refused: tuple[str, ...]) -> subprocess.CompletedProcess:
    code = PROGRAM.format(refused=set(refused), artifact=str(artifact))
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )


def test_the_served_code_imports_no_training_library(artifact_dir):
    result = run(artifact_dir, NOT_SERVED)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[200, 200, 200]"


def test_the_check_fails_when_a_served_module_needs_a_refused_one(artifact_dir):
    # numpy is needed to serve: refusing it must break the same program.
    result = run(artifact_dir, ("numpy",))
    assert result.returncode != 0 and "serve-only" in result.stderr


def test_the_serve_lock_pins_exactly_the_declared_dependencies():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {dep.split(">")[0].split("=")[0].lower() for dep in project["dependencies"]}
    pinned = {
        line.split("==")[0].lower()
        for line in (REPO / "requirements-serve.txt").read_text().splitlines()
        if "==" in line and not line.lstrip().startswith("#")
    }
    assert declared == pinned
    assert not declared & set(NOT_SERVED)
