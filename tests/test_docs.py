"""The README and docs/ say only what the code does: every command in them is checked here.

Commands are taken from fenced shell blocks (bash, sh, console, or unlabelled blocks whose
first line starts with a known program) and from inline code that starts with one. Each kind
is checked against the code it names, without Java, a server or a trained model:

- ``make TARGET VAR=...``: the target exists, each variable is one the Makefile uses, and the
  commands make's dry run (``make -n``) prints for it pass the ``python -m`` checks below;
- ``python -m MODULE ARGS``: the module exists and, for the project's own modules, its
  argument parser accepts ARGS (the module runs in a subprocess until its parser has parsed;
  nothing after that runs);
- ``torchrun``, ``torchserve``, ``locust``: their own parsers accept the flags, and torchrun's
  module is checked as above;
- ``curl``: the URL is one the server serves on the port config.properties gives it, with the
  key it needs, and a prediction body passes the handler's request parser under the limits of
  the endpoint it is sent to (the interactive one's or the bulk one's model-config.yaml);
- ``name() { ...; }``: the shell function prints the right key from a key_file.json.

Relative links must point at files that exist, and anchors at headings that exist. The README
stays a front door (at most 250 lines) that links every page of docs/. The few command forms
that cannot be checked this way are listed in :data:`ALLOWED`, each with its reason.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from handler.parsing import Limits, decode_body, parse_request
from loadtest import traffic
from model.errors import BadRequestError
from train.archive import ENDPOINTS
from train.data.formats import ML100K_GENRES

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
PAGES = (README, *sorted((REPO / "docs").glob("*.md")))
README_MAX_LINES = 250

# Command forms that no test can run or parse here, each with the reason it is left unchecked.
ALLOWED = {
    "source": "changes the caller's shell; tests/test_activate.py checks the activate script",
    "pre-commit": "pre-commit's own CLI; test_pre_commit_config_exists checks what it reads",
    "sudo": "installs a system package (Java), outside the repository",
    "git": "reads the repository's history, which a shallow clone may not have",
}
# Programs whose commands are checked, by the name they are called by (a path's last part).
PYTHONS = {"python", "python3"}
CHECKED = PYTHONS | {"make", "curl", "torchrun", "torchserve", "locust"}
SHELL_FENCES = {"bash", "sh", "shell", "console"}
FAKE_KEYS = {"inference": "inf-key", "management": "mgmt-key", "API": "api-key"}
# Wrappers that run the command after them unchanged.
WRAPPERS = {"nohup": 0, "/usr/bin/time": 1}  # how many of the wrapper's own flags follow it


@dataclass(frozen=True)
class Command:
    """One shell command of a page (continuation lines joined), and where it is."""

    page: Path
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}: {self.text}"


@dataclass(frozen=True)
class Invocation:
    """What the checker subprocess runs: a project module's parser, or Locust's."""

    kind: str  # "module" or "locust"
    target: str  # the module name; "" for locust
    argv: tuple[str, ...]


@dataclass
class Plan:
    """What checking one command found wrong by itself, and what the subprocess must run."""

    errors: list[str] = field(default_factory=list)
    invocations: list[Invocation] = field(default_factory=list)


# --------------------------------------------------------------------------- reading the pages


_FENCE = re.compile(r"^```(\S*)\s*$")
_INLINE = re.compile(r"(?<!`)`([^`]+)`(?!`)")
_FUNCTION = re.compile(r"^(\w+)\(\)\s*\{\s*(.*?);?\s*\}$", re.S)
_ASSIGNMENT = re.compile(r"^([A-Z_][A-Z0-9_]*)=(\S+)$")


def _blocks(page: Path) -> tuple[list[tuple[str, int, list[str]]], list[str]]:
    """The page's fenced blocks (label, first line number, lines) and its prose with every
    fenced line blanked (so line numbers still count)."""
    blocks, prose = [], []
    open_block: tuple[str, int, list[str]] | None = None
    for number, line in enumerate(page.read_text().splitlines(), 1):
        fence = _FENCE.match(line)
        if open_block is None and fence:
            open_block = (fence.group(1), number + 1, [])
            prose.append("")
        elif open_block is not None and line.strip() == "```":
            blocks.append(open_block)
            open_block = None
            prose.append("")
        elif open_block is not None:
            open_block[2].append(line)
            prose.append("")
        else:
            prose.append(line)
    assert open_block is None, f"{page.name}: a fenced block is never closed"
    return blocks, prose


def _program(word: str) -> str:
    return word.rsplit("/", 1)[-1]


def _unbalanced(text: str) -> bool:
    try:
        shlex.split(text, comments=True)
    except ValueError:
        return True
    return False


def _shell_commands(page: Path, label: str, first: int, lines: list[str]) -> list[Command]:
    """The commands of one shell block: comment lines dropped, ``\\`` continuations and
    quotes spanning lines joined; in a console block only the ``$`` lines count."""
    commands, pending, start = [], "", 0
    for number, line in enumerate(lines, first):
        if label == "console":
            if line.startswith("$ "):
                commands.append(Command(page, number, line[2:].strip()))
            continue
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not pending:
            start = number
        pending = f"{pending}\n{line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip() + " "
            continue
        if _unbalanced(pending):
            continue
        commands.append(Command(page, start, pending.strip()))
        pending = ""
    assert not pending, f"{page.name}:{start}: unfinished command {pending!r}"
    return commands


def _looks_like_commands(lines: list[str]) -> bool:
    words = [line.split()[0] for line in lines if line.strip()]
    return bool(words) and (_program(words[0]) in CHECKED or words[0] in ALLOWED)


@cache
def page_commands(page: Path) -> list[Command]:
    """Every command of ``page``: its shell blocks, then the inline code that starts with a
    program this file checks or allows, or defines a shell function."""
    blocks, prose = _blocks(page)
    commands = []
    for label, first, lines in blocks:
        if label in SHELL_FENCES or (not label and _looks_like_commands(lines)):
            commands += _shell_commands(page, label, first, lines)
    text = "\n".join(prose)
    for span in _INLINE.finditer(text):
        code = " ".join(span.group(1).split())
        words = code.split()
        if len(words) < 2:
            continue  # a program named in prose (`torchrun`), not a command
        if _program(words[0]) in CHECKED or words[0] in ALLOWED or _FUNCTION.match(code):
            commands.append(Command(page, text.count("\n", 0, span.start()) + 1, code))
    return commands


COMMANDS = [command for page in PAGES for command in page_commands(page)]


# --------------------------------------------------------------------------- splitting commands

_REDIRECT = re.compile(r"(?<![\w\"'])\d*(?:>>|>&|>|<)\s*[^\s'\"]+")
_SEPARATORS = {"&&", "||", "|", ";", "&"}


def simple_commands(text: str) -> list[list[str]]:
    """``text`` split into simple commands (argv lists) at ``&&``, ``|``, ``;`` and ``&``,
    with redirections, comments and wrappers (nohup, /usr/bin/time -v, VAR=value) dropped."""
    lexer = shlex.shlex(_REDIRECT.sub(" ", text), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    argvs: list[list[str]] = []
    argv: list[str] = []
    for token in lexer:
        if token in _SEPARATORS:
            argvs.append(argv)
            argv = []
        else:
            argv.append(token)
    argvs.append(argv)
    return [_unwrapped(argv) for argv in argvs if argv]


def _unwrapped(argv: list[str]) -> list[str]:
    while argv:
        if argv[0] in WRAPPERS:
            argv = argv[1 + WRAPPERS[argv[0]] :]
        elif _ASSIGNMENT.match(argv[0]) and len(argv) > 1:
            argv = argv[1:]
        else:
            break
    return argv


# --------------------------------------------------------------------------- the project


def project_packages() -> set[str]:
    """The first-party packages (ruff's isort setting): their command lines are ours to check."""
    settings = tomllib.loads((REPO / "pyproject.toml").read_text())
    return set(settings["tool"]["ruff"]["lint"]["isort"]["known-first-party"])


@cache
def makefile() -> tuple[set[str], set[str]]:
    """The Makefile's targets and the variables it uses (``$(NAME)``)."""
    text = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z0-9_-]+)\s*:(?!=)", text, flags=re.M))
    return targets, set(re.findall(r"\$\((\w+)\)", text))


@cache
def make_dry_run(args: tuple[str, ...]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(
        ["make", "-n", "--no-print-directory", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@cache
def served_ports() -> dict[int | None, str]:
    """Port -> API, from config.properties (what the shipped server listens on)."""
    ports: dict[int | None, str] = {}
    for line in (REPO / "config.properties").read_text().splitlines():
        key, _, value = line.partition("=")
        if key in ("inference_address", "management_address", "metrics_address"):
            ports[urlsplit(value.strip()).port] = key.removesuffix("_address")
    return ports


# The model names this project registers (`make archive`): the interactive endpoint and the
# bulk one, each with its model-config.yaml.
_MODELS = "|".join(re.escape(name) for name in ENDPOINTS)
# Paths each API answers (TorchServe 0.12 with the model names this project registers).
SERVED_PATHS = {
    "inference": re.compile(rf"/predictions/(?:{_MODELS})|/ping"),
    "management": re.compile(rf"/models(/(?:{_MODELS})(/[\w.]+(/set-default)?)?)?|/token"),
    "metrics": re.compile(r"/metrics"),
}
# The request limits under `handler:` in each endpoint's model-config.yaml, by path.
_LIMIT_FIELDS = ("max_k", "max_pairs", "max_ratings", "default_k")


@cache
def endpoint_limits(path: str) -> Limits | None:
    """The limits of the endpoint at ``path`` (``/predictions/<name>``), as its handler reads
    them from its model-config.yaml; None for a path that is no prediction endpoint."""
    name = path.removeprefix("/predictions/")
    if not path.startswith("/predictions/") or name not in ENDPOINTS:
        return None
    settings = yaml.safe_load(ENDPOINTS[name].read_text()).get("handler") or {}
    return Limits(**{f: int(settings[f]) for f in _LIMIT_FIELDS if f in settings})


# The shell function each API's key is read with at call time, as the pages define them.
KEY_FUNCTIONS = {"inference": "token", "management": "mgmt"}


def defined_functions(page: Path) -> dict[str, str]:
    """The shell functions ``page`` defines (name -> definition)."""
    found = {}
    for command in page_commands(page):
        match = _FUNCTION.match(command.text)
        if match:
            found[match.group(1)] = command.text
    return found


def assignments(page: Path) -> dict[str, str]:
    """The shell variables ``page`` sets (``URL=...``)."""
    found = {}
    for command in page_commands(page):
        match = _ASSIGNMENT.match(command.text)
        if match:
            found[match.group(1)] = match.group(2)
    return found


# --------------------------------------------------------------------------- checking one command


@cache
def plan(command: Command) -> Plan:
    """Check ``command`` as far as this process can; what needs a parser run is listed."""
    result = Plan()
    if _FUNCTION.match(command.text):
        result.errors += check_function(command.text)
        return result
    for argv in simple_commands(command.text):
        if _ASSIGNMENT.match(argv[0]) and len(argv) == 1:
            continue
        program = _program(argv[0])
        if argv[0] in ALLOWED:
            continue
        if program == "make":
            check_make(argv[1:], result)
        elif program in PYTHONS:
            check_python(argv[1:], result)
        elif program == "torchrun":
            check_torchrun(argv[1:], result)
        elif program == "torchserve":
            check_torchserve(argv[1:], result)
        elif program == "locust":
            check_locust_command(argv[1:], result)
        elif program == "curl":
            result.errors += check_curl(argv[1:], command.page)
        else:
            result.errors.append(
                f"{argv[0]!r} is no command form this test knows: check it here or add it to "
                "ALLOWED with the reason it cannot be checked"
            )
    return result


def check_make(args: list[str], result: Plan) -> None:
    targets, variables = makefile()
    for arg in args:
        name, equals, _ = arg.partition("=")
        if arg.startswith("-"):
            continue
        if equals and name not in variables:
            result.errors.append(f"make variable {name} is not used by the Makefile")
        elif not equals and arg not in targets:
            result.errors.append(f"make target {arg!r} is not in the Makefile")
    if result.errors:
        return
    done = make_dry_run(tuple(args))
    if done.returncode != 0:
        result.errors.append(f"make -n {' '.join(args)} failed: {done.stderr.strip()}")
        return
    # What make would run: every python -m line of the project is checked like a page's.
    for line in done.stdout.replace("\\\n", " ").splitlines():
        for argv in simple_commands(line):
            if _program(argv[0]) in PYTHONS and argv[1:2] == ["-m"]:
                check_python(argv[1:], result)


def check_python(args: list[str], result: Plan) -> None:
    if args[:1] != ["-m"] or len(args) < 2:
        result.errors.append(f"python {' '.join(args)}: only python -m MODULE is checked")
        return
    module, argv = args[1], args[2:]
    if module.split(".")[0] not in project_packages():
        # A tool's own module (pytest, venv): it must be there; its flags are its business.
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            result.errors.append(f"no module {module}")
        return
    result.invocations.append(Invocation("module", module, tuple(argv)))
    if module == "loadtest.run" and "--" in argv:
        # What follows -- goes to Locust.
        result.invocations.append(Invocation("locust", "", tuple(argv[argv.index("--") + 1 :])))


def _parse(
    parser: argparse.ArgumentParser, argv: list[str]
) -> tuple[argparse.Namespace | None, str]:
    """``parser``'s namespace for ``argv``, or None and what the parser said."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            return parser.parse_args(argv), ""
        except SystemExit as exc:
            return None, stderr.getvalue().strip() or f"exit {exc.code}"


def check_torchrun(args: list[str], result: Plan) -> None:
    from torch.distributed.run import get_args_parser

    parsed, error = _parse(get_args_parser(), args)
    if parsed is None:
        result.errors.append(f"torchrun refuses {args}: {error}")
    elif not parsed.module:
        result.errors.append("torchrun without -m: the pages train through python -m train")
    else:
        check_python(["-m", parsed.training_script, *parsed.training_script_args], result)


def check_torchserve(args: list[str], result: Plan) -> None:
    from ts.arg_parser import ArgParser

    parsed, error = _parse(ArgParser.ts_parser(), args)
    if parsed is None:
        result.errors.append(f"torchserve refuses {args}: {error}")
    elif parsed.ts_config and not (REPO / parsed.ts_config).is_file():
        result.errors.append(f"torchserve --ts-config {parsed.ts_config}: no such file")


def check_locust_command(args: list[str], result: Plan) -> None:
    if "-f" in args:
        locustfile = args[args.index("-f") + 1]
        if not (REPO / locustfile).is_file():
            result.errors.append(f"locust -f {locustfile}: no such file")
    result.invocations.append(Invocation("locust", "", tuple(args)))


def check_curl(args: list[str], page: Path) -> list[str]:
    urls = [a for a in args if a.startswith(("http", "$"))]
    headers = [value for flag, value in zip(args, args[1:]) if flag == "-H"]
    bodies = [value for flag, value in zip(args, args[1:]) if flag in ("-d", "--data")]
    if len(urls) != 1:
        return [f"curl needs one URL, got {urls}"]
    url = urls[0]
    if url.startswith("$"):
        name = url.strip("${}")
        if name not in assignments(page):
            return [f"${name} is not set on this page"]
        url = assignments(page)[name]
    parts = urlsplit(url)
    api = served_ports().get(parts.port)
    if api is None or parts.hostname != "127.0.0.1":
        return [f"{url}: no API of config.properties listens there"]
    errors = []
    if not SERVED_PATHS[api].fullmatch(parts.path):
        errors.append(f"{parts.path} is not served by the {api} API")
    if api in KEY_FUNCTIONS:
        function = KEY_FUNCTIONS[api]
        if f"Authorization: Bearer $({function})" not in headers:
            errors.append(f'the {api} API needs its key: -H "Authorization: Bearer $({function})"')
        elif function not in defined_functions(page):
            errors.append(f"{function}() is not defined on this page")
    for body in bodies:
        errors += check_body(parts.path, body, headers)
    return errors


def check_body(path: str, body: str, headers: list[str]) -> list[str]:
    limits = endpoint_limits(path)
    if limits is None:
        return [f"a body sent to {path}"]
    if "Content-Type: application/json" not in headers:
        return ["a body without -H 'Content-Type: application/json' is sent as a form (400)"]
    try:
        request = decode_body({"body": body.encode()})
        parse_request(request, limits, ML100K_GENRES, (1.0, 5.0))
    except BadRequestError as exc:
        return [f"the handler refuses {body}: {exc}"]
    return []


def check_function(definition: str) -> list[str]:
    """Run a key function in a folder holding a known key_file.json."""
    match = _FUNCTION.match(definition)
    assert match, definition
    name = match.group(1)
    kind = {function: api for api, function in KEY_FUNCTIONS.items()}.get(name)
    if kind is None:
        return [f"{name}() is no key function this test knows"]
    with tempfile.TemporaryDirectory() as folder:
        keys = {
            k: {"key": v, "expiration time": "2099-01-01T00:00:00Z"} for k, v in FAKE_KEYS.items()
        }
        Path(folder, "key_file.json").write_text(json.dumps(keys))
        done = subprocess.run(
            ["bash", "-c", f"{definition}\n{name}"], cwd=folder, capture_output=True, text=True
        )
    if done.stdout.strip() != FAKE_KEYS[kind]:
        return [
            f"{name}() printed {done.stdout.strip()!r} ({done.stderr.strip()}), not the {kind} key"
        ]
    return []


# --------------------------------------------------------------------------- the parsers, run

# Runs in a subprocess: each module as `python -m` would, until its parser has parsed (then
# stops it), so no tool gets to do its work. Locust's parser gets the project's own options.
_CHECKER = r"""
import argparse, contextlib, importlib.util, io, json, re, runpy, sys
from pathlib import Path

class Parsed(BaseException): pass
class Refused(BaseException): pass
real_parse_args = argparse.ArgumentParser.parse_args
def parse_args(self, args=None, namespace=None):
    parsed = real_parse_args(self, args, namespace)
    raise Parsed(parsed)
def error(self, message):
    raise Refused(f"{self.prog}: {message}")
argparse.ArgumentParser.parse_args = parse_args
argparse.ArgumentParser.error = error

def source(module):
    spec = importlib.util.find_spec(module)
    if spec is None:
        return None
    if spec.submodule_search_locations is not None:
        spec = importlib.util.find_spec(module + ".__main__")
        if spec is None:
            return None
    return Path(spec.origin).read_text()

def has_parser(module, seen=()):
    text = source(module)
    if text is None or module in seen:
        return False
    if "parse_args(" in text:
        return True
    mains = re.findall(r"from ([\w.]+) import main", text)
    return any(has_parser(m, (*seen, module)) for m in mains)

def check_module(module, argv):
    try:
        if source(module) is None:
            return f"no module {module} to run"
    except ModuleNotFoundError as exc:
        return f"no module {module} to run ({exc})"
    if not argv:
        return None
    if not has_parser(module):
        return f"{module} has no argument parser, so it cannot take {argv}"
    sys.argv = [module, *argv]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except Parsed:
        return None
    except Refused as exc:
        return str(exc)
    except SystemExit as exc:
        return None if exc.code in (0, None) else f"exit {exc.code}: {out.getvalue()[-500:]}"
    except BaseException as exc:
        return f"{type(exc).__name__}: {exc}"
    return f"{module} ran to its end without parsing arguments"

def check_locust(argv, options, classes):
    from locust.argument_parser import get_parser
    parser = get_parser()
    group = parser.add_argument_group("movierec")
    for option in options:
        group.add_argument(*option["names"], **option["settings"])
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            namespace = parser.parse_args(argv)  # configargparse's own: it returns
    except Parsed as parsed:
        namespace = parsed.args[0]
    except Refused as exc:
        return str(exc)
    except SystemExit as exc:
        return None if exc.code in (0, None) else out.getvalue().strip()[-500:]
    unknown = sorted(set(namespace.user_classes) - set(classes))
    return f"no Locust user classes {unknown} in the locustfile" if unknown else None

job = json.loads(sys.stdin.read())
results = []
for kind, target, argv in job["invocations"]:
    if kind == "module":
        results.append(check_module(target, argv))
    else:
        results.append(check_locust(argv, job["locust_options"], job["locust_classes"]))
print("\n" + json.dumps(results))
"""


def locust_options() -> tuple[list[dict], list[str]]:
    """The options the project adds to Locust (listeners of ``init_command_line_parser`` in
    loadtest/) and the user classes of the locustfile, read from the source: those it defines,
    and the one it makes per endpoint of the mix, named after it (loadtest.traffic imports no
    Locust, so it is safe to import here)."""
    options, classes = [], [endpoint.__name__ for endpoint in traffic.ENDPOINTS]
    for path in sorted((REPO / "loadtest").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and any(
                "init_command_line_parser" in ast.unparse(d) for d in node.decorator_list
            ):
                for call in ast.walk(node):
                    if (
                        isinstance(call, ast.Call)
                        and getattr(call.func, "attr", "") == "add_argument"
                    ):
                        names = [a.value for a in call.args if isinstance(a, ast.Constant)]
                        settings = {
                            k.arg: k.value.value
                            for k in call.keywords
                            if k.arg in ("action", "nargs") and isinstance(k.value, ast.Constant)
                        }
                        options.append({"names": names, "settings": settings})
            if path.name == "locustfile.py" and isinstance(node, ast.ClassDef):
                abstract = any(
                    isinstance(s, ast.Assign)
                    and any(getattr(t, "id", "") == "abstract" for t in s.targets)
                    for s in node.body
                )
                if not abstract:
                    classes.append(node.name)
    return options, classes


@pytest.fixture(scope="module")
def parsed() -> dict[Invocation, str | None]:
    """Every invocation the pages' commands need, run once in one subprocess."""
    invocations = sorted({i for c in COMMANDS for i in plan(c).invocations}, key=repr)
    options, classes = locust_options()
    job = {
        "invocations": [[i.kind, i.target, list(i.argv)] for i in invocations],
        "locust_options": options,
        "locust_classes": classes,
    }
    done = subprocess.run(
        [sys.executable, "-c", _CHECKER],
        input=json.dumps(job),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.rstrip().rsplit("\n", 1)[-1])
    return dict(zip(invocations, results))


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: f"{c.page.name}:{c.line}")
def test_command_is_what_the_code_takes(command, parsed):
    found = plan(command)
    errors = found.errors + [
        f"{' '.join((i.target or 'locust', *i.argv))}: {parsed[i]}"
        for i in found.invocations
        if parsed[i]
    ]
    assert not errors, f"{command}\n" + "\n".join(errors)


def test_every_kind_of_request_has_a_checked_example_in_the_readme():
    bodies = [
        json.loads(args[args.index("-d") + 1])
        for c in page_commands(README)
        for args in simple_commands(c.text)
        if args[0] == "curl" and "-d" in args
    ]
    assert any("pairs" in b for b in bodies)
    assert any("user_id" in b and "movie_id" not in b for b in bodies)
    assert any("ratings" in b for b in bodies)
    assert any("similar_to" in b for b in bodies)


def test_readme_defines_the_token_function_once():
    # tests/test_keys.py runs the README's token() against a real server, with expiring keys.
    assert len(re.findall(r"^token\(\) \{.*\}$", README.read_text(), flags=re.M)) == 1


def test_pre_commit_config_exists():
    assert (REPO / ".pre-commit-config.yaml").is_file()


def test_readme_is_a_front_door_that_links_every_room():
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    for page in PAGES[1:]:
        assert f"](docs/{page.name}" in text, f"README does not link docs/{page.name}"


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: rendered text, lower case, punctuation dropped."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


@cache
def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings; a repeated heading gets -1, -2, ... as on GitHub."""
    _, prose = _blocks(page)
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose:
        heading = re.match(r"#{1,6} (.*)", line)
        if heading:
            base = slug(heading.group(1))
            count = seen.get(base, 0)
            found.add(f"{base}-{count}" if count else base)
            seen[base] = count + 1
    return found


_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_point_at_files_and_headings_that_exist(page):
    _, prose = _blocks(page)
    text = _INLINE.sub("", "\n".join(prose))
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def _endpoint_table(page: str, first_header: str) -> dict[str, list[str]]:
    """A Markdown table of ``page`` whose header row starts with ``first_header``: its rows
    by their first cell, each the list of the other cells."""
    lines = (REPO / page).read_text().splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith(f"| {first_header}"))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def test_the_endpoint_settings_in_operations_md_are_the_archives():
    rows = _endpoint_table("docs/operations.md", "| `/predictions/movierec` (interactive)")
    for column, (name, path) in enumerate(ENDPOINTS.items()):
        config = yaml.safe_load(path.read_text())
        handler = config["handler"]

        def numbers(row: str, column: int = column) -> list[int]:
            return [int(n.replace(",", "")) for n in re.findall(r"\d[\d,]*", rows[row][column])]

        assert rows["settings file (packed into the archive)"][column] == (
            f"`{path.relative_to(REPO)}`"
        ), name
        workers = numbers("workers")
        assert workers[0] == config["minWorkers"] == config["maxWorkers"], name
        assert workers[1:] == [handler.get("nice", 0)], name
        assert numbers("`batchSize` / `maxBatchDelay`") == [
            config["batchSize"],
            config["maxBatchDelay"],
        ], name
        assert numbers("`jobQueueSize` (waiting requests; beyond it: 503 at once)") == [
            config["jobQueueSize"]
        ], name
        assert numbers("`responseTimeout`") == [config["responseTimeout"]], name
        limits = numbers("size limits (larger: 413)")
        assert limits[:2] == [handler["max_pairs"], handler["max_ratings"]], name
