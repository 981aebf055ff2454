"""Which module may import which, read from the source with ``ast`` (nothing is imported):
train/'s layers (train/__init__.py) only import downwards, the served code never imports the
offline code, and two seams of the served code stay cut."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import train

REPO = Path(__file__).resolve().parent.parent

# train/'s layers, lowest first: a module belongs to the layer of its longest prefix below and
# may import its own layer and those before it. train/__init__.py's docstring lists them.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("data", ("train.data",)),
    ("metrics", ("train.evaluation.metrics", "train.evaluation.ranking")),
    ("peers", ("train.peers",)),
    ("fitting", ("train.fitting",)),
    ("protocols", ("train.evaluation",)),
    ("commands", ("train",)),
)


def module_name(path: Path) -> str:
    """``train/fitting/loop.py`` -> ``train.fitting.loop``; a package is its ``__init__``."""
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    """Whether ``name`` is a module or package of the repository."""
    base = REPO.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imported_modules(source: str, module: str, is_package: bool = False) -> Iterator[str]:
    """Every module ``source`` (the text of ``module``) imports, anywhere in it (a function's
    body and ``if TYPE_CHECKING:`` blocks included): ``from a import b`` is ``a.b`` when that
    is a module of the repository, else ``a``."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield full if is_module(full) else base


def layer_of(module: str) -> int | None:
    """The index in :data:`LAYERS` of ``module``'s layer; None outside train/."""
    best, found = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), index
    return found


def upward_imports(module: str, source: str, is_package: bool = False) -> list[str]:
    """``"importer (layer) -> imported (layer)"`` for each import of ``source`` (the text of
    ``module``) from a higher layer of train/ than its own."""
    own = layer_of(module)
    if own is None:
        return []
    found = []
    for imported in imported_modules(source, module, is_package):
        theirs = layer_of(imported)
        if theirs is not None and theirs > own:
            found.append(f"{module} ({LAYERS[own][0]}) -> {imported} ({LAYERS[theirs][0]})")
    return found


def sources(*packages: str) -> Iterator[tuple[str, Path]]:
    for package in packages:
        for path in sorted((REPO / package).rglob("*.py")):
            yield module_name(path), path


def test_train_imports_only_from_its_own_layer_or_below():
    found = [
        line
        for module, path in sources("train")
        for line in upward_imports(module, path.read_text(), path.name == "__init__.py")
    ]
    assert not found, "upward imports in train/:\n" + "\n".join(found)


def test_an_upward_import_is_found_wherever_it_is_written():
    # A data module reaching the experiment code, at the top, in a function and behind
    # TYPE_CHECKING; the same imports from a command line are fine.
    source = (
        "from typing import TYPE_CHECKING\n"
        "from train.fitting.experiment import run_autorec\n"
        "from train import fitting\n"
        "if TYPE_CHECKING:\n"
        "    from train.peers.tuning import Tuning\n"
        "def f():\n"
        "    import train.evaluation.newusers\n"
        "    from .. import tradeoff\n"
    )
    found = upward_imports("train.data.fake", source)
    assert found == [
        "train.data.fake (data) -> train.fitting.experiment (fitting)",
        "train.data.fake (data) -> train.fitting (fitting)",
        "train.data.fake (data) -> train.peers.tuning (peers)",
        "train.data.fake (data) -> train.evaluation.newusers (protocols)",
        "train.data.fake (data) -> train.tradeoff (commands)",
    ]
    assert upward_imports("train.fake_command", source) == []
    # The metrics are below the peers; the new-user protocols above fitting.
    assert upward_imports("train.peers.fake", "from train.evaluation import ranking\n") == []
    assert upward_imports("train.fitting.fake", "import train.evaluation.newusers\n") == [
        "train.fitting.fake (fitting) -> train.evaluation.newusers (protocols)"
    ]


def test_every_module_of_train_has_a_layer_and_the_docstring_lists_them_in_order():
    assert all(layer_of(module) is not None for module, _ in sources("train"))
    doc = train.__doc__ or ""
    positions = [doc.find(f"{index}. {name}") for index, (name, _) in enumerate(LAYERS, 1)]
    assert -1 not in positions and positions == sorted(positions), positions


@pytest.mark.parametrize("package", ["model", "handler", "client", "web"])
def test_the_served_code_the_client_and_the_page_import_nothing_of_train(package):
    found = {
        f"{module} -> {imported}"
        for module, path in sources(package)
        for imported in imported_modules(path.read_text(), module, path.name == "__init__.py")
        if imported.split(".")[0] == "train"
    }
    assert not found, found


def test_train_imports_nothing_of_the_client_the_page_or_the_load_tests():
    sides = ("client", "web", "loadtest", "handler")
    found = {
        f"{module} -> {imported}"
        for module, path in sources("train")
        for imported in imported_modules(path.read_text(), module, path.name == "__init__.py")
        if imported.split(".")[0] in sides
    }
    assert not found, found


def test_handler_metrics_imports_neither_parsing_nor_answering():
    """The Prometheus counters are below the request code: parsing and answering count
    through them, not the other way round."""
    path = REPO / "handler" / "metrics.py"
    imported = set(imported_modules(path.read_text(), "handler.metrics"))
    assert not imported & {"handler.parsing", "handler.answering"}, imported


def test_the_recommender_has_no_base_class_from_scoring():
    """model.recommender.Recommender holds its scorer (model.scoring) instead of inheriting
    from it."""
    from model import scoring
    from model.recommender import Recommender

    inherited = [c.__name__ for c in Recommender.__mro__ if c.__module__ == scoring.__name__]
    assert not inherited, inherited
