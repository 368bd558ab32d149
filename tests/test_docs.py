"""The docs stay true: every hook, config key and command is documented, and the
examples in them run.

Python examples: every fenced ```python block in ``docs/`` and ``README.md`` runs
in a subprocess with a fresh ``HERMES_HOME`` (``--8<--`` snippet includes are
expanded first). A block that starts with ``# run with pytest`` is a test module
and runs under pytest. A block that cannot run on its own starts with
``# not run: <reason>`` and is only compiled.

Shell examples: every ```sh block runs under ``bash -euo pipefail`` with a fresh
``HERMES_HOME`` and must exit 0, except install instructions (a block whose first
line runs ``pip install``: installing is what tox does) and blocks that start with
``# not run: <reason>``. A ```console block is a transcript whose output must match.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import importlib
import inspect
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import yaml

from hermes_cron.config import DEFAULTS

# ``hermes_cron.hookspec`` the attribute is the marker; the module is what we read.
hookspec = importlib.import_module("hermes_cron.hookspec")

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
NOT_RUN = "# not run:"
WITH_PYTEST = "# run with pytest"
EXAMPLE_SRC = ROOT / "examples" / "hermes-cron-provider-example" / "src"
SNIPPET = re.compile(r'^-{2}8<-{2} "(?P<path>[^"]+)"\s*$', re.M)
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)(?P<attrs>[^\n]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.M | re.S,
)


def doc_files() -> List[Path]:
    return sorted(DOCS.rglob("*.md")) + [ROOT / "README.md"]


def expand_snippets(text: str) -> str:
    """Resolve ``--8<-- "path"`` includes (pymdownx.snippets, paths from the repo root)."""
    return SNIPPET.sub(lambda m: (ROOT / m.group("path")).read_text(encoding="utf-8"), text)


def blocks(path: Path, lang: str) -> Iterator[Tuple[int, str, str]]:
    """``(line, attrs, code)`` of every fenced block in ``lang``, snippets expanded."""
    text = path.read_text(encoding="utf-8")
    for match in FENCE.finditer(text):
        if match.group("lang") != lang:
            continue
        line = text.count("\n", 0, match.start()) + 1
        indent = match.group("indent")
        body = "".join(
            ln[len(indent) :] if ln.startswith(indent) else ln
            for ln in match.group("body").splitlines(keepends=True)
        )
        yield line, match.group("attrs"), expand_snippets(body)


def python_examples() -> List[Any]:
    params = []
    for path in doc_files():
        for line, _attrs, code in blocks(path, "python"):
            label = f"{path.relative_to(ROOT)}:{line}"
            params.append(pytest.param(path, code, id=label))
    return params


def leaf_keys(tree: Dict[str, Any], prefix: Tuple[str, ...] = ()) -> Iterator[Tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from leaf_keys(value, (*prefix, key))
        else:
            yield ".".join((*prefix, key)), value


IGNORE_BUILD = shutil.ignore_patterns("__pycache__", "*.egg-info")


@functools.cache
def example_import_path() -> Path:
    """A folder holding only the example provider's package, to put on PYTHONPATH.

    Not ``src/`` itself: building the example (tox's ``example`` env, maybe running
    at the same time) leaves an ``.egg-info`` there, whose entry point would make
    ``filetick`` a discovered provider and change what the docs' transcripts print.
    """
    folder = Path(tempfile.mkdtemp(prefix="hermes-cron-docs-example-"))
    atexit.register(shutil.rmtree, folder, True)
    for package in EXAMPLE_SRC.iterdir():
        if package.is_dir() and (package / "__init__.py").exists():
            shutil.copytree(package, folder / package.name, ignore=IGNORE_BUILD)
    return folder


def child_env(home: Path) -> Dict[str, str]:
    env = dict(os.environ)
    env["HERMES_HOME"] = str(home)
    env.pop("HERMES_CRON_TRACE_PLUGINS", None)
    # The example provider's source (the tutorial includes it; it is not installed here).
    paths = (str(example_import_path()), env.get("PYTHONPATH", ""))
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


# -- coverage ---------------------------------------------------------------------------


ALL_HOOKS = hookspec.PROVIDER_HOOKS + hookspec.EXECUTION_HOOKS + hookspec.OBSERVER_HOOKS


@pytest.mark.parametrize("name", ALL_HOOKS)
def test_every_hook_has_a_section_with_its_docstring_and_an_example(name: str) -> None:
    text = (DOCS / "hooks.md").read_text(encoding="utf-8")
    directive = f"::: hermes_cron.hookspec.{name}\n"
    assert directive in text, f"docs/hooks.md does not render the hook {name}"
    section = text.split(directive, 1)[1].split(":::", 1)[0]
    examples = [code for _l, _a, code in blocks_of_text(section, "python")]
    assert examples, f"the section of {name} needs an example"
    spec = set(inspect.signature(getattr(hookspec, name)).parameters)
    defs = re.findall(rf"^def {name}\(([^)]*)\)", "\n".join(examples), re.M)
    assert defs, f"the example of {name} must implement it"
    for params in defs:
        names = {p.strip() for p in params.split(",") if p.strip()}
        assert names <= spec, f"{name} example takes {names}, the spec has {spec}"


def test_hook_sections_are_headed_by_the_exact_signature() -> None:
    """mkdocstrings renders each ``:::`` block as a heading holding the signature."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda *args: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)
    plugin = next(p["mkdocstrings"] for p in config["plugins"] if isinstance(p, dict))
    options = plugin["handlers"]["python"]["options"]
    assert options["show_root_heading"] is True
    assert options["separate_signature"] is False
    assert options.get("show_signature", True) is True
    assert options["show_signature_annotations"] is True


def test_every_hook_is_in_the_spec_lists() -> None:
    """The coverage test above reads these lists: make sure they name every hook spec."""
    specs = {
        name
        for name, fn in vars(hookspec).items()
        if callable(fn) and hasattr(fn, f"{hookspec.PROJECT_NAME}_spec")
    }
    assert specs == set(ALL_HOOKS)


@pytest.mark.parametrize("key,default", list(leaf_keys(DEFAULTS)))
def test_every_config_key_is_documented_with_its_default(key: str, default: Any) -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    rows = [ln for ln in text.splitlines() if ln.startswith(f"| `{key}` |")]
    assert rows, f"docs/configuration.md has no table row for {key}"
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1] == f"`{json.dumps(default)}`", f"{key}: documented default {cells[1]}"
    assert len(cells[2]) > 20, f"{key}: say what it means"


def test_the_full_config_example_is_the_defaults(tmp_path: Path) -> None:
    """The 'every key at its default' YAML block parses to exactly DEFAULTS."""
    found = [
        code
        for _line, _attrs, code in blocks(DOCS / "configuration.md", "yaml")
        if "every key" in code or "max_workers" in code
    ]
    assert found, "docs/configuration.md lost its full example"
    assert yaml.safe_load(found[0]) == DEFAULTS


# -- examples ---------------------------------------------------------------------------


def _run_python(code: str, workdir: Path) -> Tuple[int, str]:
    """Run a python example as a script, or under pytest when it is a test module."""
    first = code.lstrip().splitlines()[0]
    home = workdir / "home"
    home.mkdir()
    if first.startswith(WITH_PYTEST):
        # A test module: run it under pytest (with hermes-cron's pytest plugin).
        script = workdir / "test_doc_example.py"
        # A base temp dir of its own: pytest's default one is shared by every pytest run
        # on the machine (the tox envs run in parallel) and its clean-up races theirs.
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"]
        command += ["--basetemp", str(workdir / "pytest-tmp")]
    else:
        script = workdir / "example.py"
        command = [sys.executable]
    script.write_text(code, encoding="utf-8")
    return _run([*command, str(script)], workdir, child_env(home), timeout=60)


def _run_shell(code: str, workdir: Path) -> Tuple[int, str]:
    """Run a shell example under ``bash -euo pipefail``."""
    home = workdir / "home"
    home.mkdir()
    return _run(["bash", "-euo", "pipefail", "-c", code], workdir, shell_env(home), timeout=120)


def _run(argv: List[str], cwd: Path, env: Dict[str, str], *, timeout: float) -> Tuple[int, str]:
    # Its own process group, so that whatever the example left running (a daemon, a
    # server) is ended with it, even when it fails or times out.
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out = f"(timed out after {timeout:g} s)"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
    return proc.returncode, out


#: Examples run at the same time. Most of their time is spent waiting (a daemon's
#: first run, a fire from the NAS stand-in), so a few at once save wall time.
PARALLEL = 3


class ExampleRuns:
    """Starts every selected example at once on a small pool; tests collect results."""

    def __init__(self, jobs: Dict[str, Any], workdir: Path) -> None:
        self._pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="docs-example")
        self._futures = {}
        for n, (key, (runner, code)) in enumerate(jobs.items()):
            folder = workdir / f"example{n}"
            folder.mkdir()
            self._futures[key] = self._pool.submit(runner, code, folder)

    def result(self, key: str) -> Tuple[int, str]:
        return self._futures[key].result()

    def close(self) -> None:
        for future in self._futures.values():
            future.cancel()
        self._pool.shutdown(wait=True)


def _runnable(kind: str, code: str) -> bool:
    first = code.lstrip().splitlines()[0] if code.strip() else ""
    if first.startswith(NOT_RUN):
        return False
    return not (kind == "sh" and INSTALL.match(first))


@pytest.fixture(scope="module")
def example_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExampleRuns]:
    runners = {"test_python_example_runs": ("python", _run_python)}
    runners["test_shell_example_runs"] = ("sh", _run_shell)
    jobs: Dict[str, Any] = {}
    for item in request.session.items:
        found = runners.get(getattr(item, "originalname", ""))
        if found is None or item.module is not request.module:
            continue
        kind, runner = found
        code = item.callspec.params["code"]  # type: ignore[attr-defined]
        if _runnable(kind, code):
            jobs[item.nodeid] = (runner, code)
    runs = ExampleRuns(jobs, tmp_path_factory.mktemp("examples"))
    yield runs
    runs.close()


@pytest.mark.parametrize("path,code", python_examples())
def test_python_example_runs(
    path: Path, code: str, example_runs: ExampleRuns, request: pytest.FixtureRequest
) -> None:
    first = code.lstrip().splitlines()[0] if code.strip() else ""
    if first.startswith(NOT_RUN):
        assert len(first) > len(NOT_RUN) + 5, "say why the example does not run"
        compile(code, str(path), "exec")
        return
    returncode, output = example_runs.result(request.node.nodeid)
    assert returncode == 0, f"{path.name} example failed:\n{code}\n---\n{output}"


def test_few_examples_are_not_run() -> None:
    skipped = [
        code
        for path in doc_files()
        for _line, _attrs, code in blocks(path, "python")
        if code.lstrip().startswith(NOT_RUN)
    ]
    total = len(python_examples())
    assert total >= 10
    assert len(skipped) <= 3, "keep non-runnable examples rare"


# -- shell examples -----------------------------------------------------------------------


def console_sessions() -> List[Any]:
    """``(path, [(command, expected output)])`` of every ```console block."""
    params = []
    for path in doc_files():
        for line, _attrs, code in blocks(path, "console"):
            steps: List[Tuple[str, List[str]]] = []
            for text in code.splitlines():
                if text.startswith("$ "):
                    steps.append((text[2:], []))
                else:
                    assert steps, f"{path}:{line}: output before any '$ ' command"
                    steps[-1][1].append(text)
            params.append(pytest.param(path, steps, id=f"{path.relative_to(ROOT)}:{line}"))
    return params


def shell_env(home: Path) -> Dict[str, str]:
    env = child_env(home)
    env["TZ"] = "UTC"
    # The hermes-cron script of the interpreter running the tests (the venv's or tox's).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@pytest.mark.parametrize("path,steps", console_sessions())
def test_console_example_prints_what_the_docs_show(
    path: Path, steps: List[Tuple[str, List[str]]], tmp_path: Path
) -> None:
    """A ```console block is a transcript: each ``$ command`` runs (bash, fresh
    HERMES_HOME per block) and must print exactly the lines shown under it."""
    home = tmp_path / "home"
    home.mkdir()
    for command, expected in steps:
        proc = subprocess.run(
            ["bash", "-c", command],
            cwd=tmp_path,
            env=shell_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
        )
        assert proc.stdout.splitlines() == expected, f"$ {command}\n{proc.stdout}"


# -- the CLI reference ------------------------------------------------------------------


def cli_commands() -> Dict[str, argparse.ArgumentParser]:
    from hermes_cron.cli import build_parser

    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("hermes-cron has no subcommands")


def cli_section(name: str) -> str:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    heading = f"### `{name}`\n"
    assert heading in text, f"docs/cli.md has no section for the command {name!r}"
    return text.split(heading, 1)[1].split("\n#", 1)[0]


@pytest.mark.parametrize("name", sorted(cli_commands()))
def test_every_cli_command_and_option_is_documented(name: str) -> None:
    section = cli_section(name)
    parser = cli_commands()[name]
    assert f"hermes-cron {name}" in section, "show the command's usage line"
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or "-h" in action.option_strings:
            continue
        if action.dest == "json":
            continue  # documented once for every command, at the top of the page
        names = action.option_strings or [action.metavar or action.dest.upper()]
        assert any(n in section for n in names), f"{name}: {names[0]} is not documented"


def test_global_options_are_documented() -> None:
    from hermes_cron.cli import build_parser

    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    for action in build_parser()._actions:
        for option in action.option_strings:
            if option not in ("-h", "--help"):
                assert f"`{option}" in text, f"global option {option} is not documented"


def documented_json(name: str) -> Any:
    found = [code for _l, _a, code in blocks_of_text(cli_section(name), "json")]
    assert found, f"docs/cli.md: {name} needs a JSON example"
    return json.loads(found[0])


def blocks_of_text(text: str, lang: str) -> Iterator[Tuple[int, str, str]]:
    for match in FENCE.finditer(text):
        if match.group("lang") == lang:
            yield 0, match.group("attrs"), match.group("body")


def hermes_cron(home: Path, *args: str) -> Any:
    proc = subprocess.run(
        [sys.executable, "-m", "hermes_cron", "--json", *args],
        env=shell_env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_documented_json_shapes_match_the_real_output(tmp_path: Path) -> None:
    """Each JSON example of docs/cli.md has exactly the fields the command prints."""
    home = tmp_path / "home"
    home.mkdir()
    job = hermes_cron(home, "add", "every 1h", "--", sys.executable, "-c", "print('hi')")
    ran = hermes_cron(home, "run", job["id"])
    real = {
        "add": job,
        "run": ran,
        "runs": hermes_cron(home, "runs")[0],
        "providers": hermes_cron(home, "providers")[0],
        "status": hermes_cron(home, "status"),
    }
    for name, value in real.items():
        doc = documented_json(name)
        doc = doc[0] if isinstance(doc, list) else doc
        assert set(doc) == set(value), f"{name}: docs {sorted(doc)} != real {sorted(value)}"
    contract = {
        "runs": {
            "job_id", "fire_at", "provider", "started_at", "finished_at", "status", "output",
            "attempt",
        },
        "providers": {"name", "source", "path", "available", "active", "shadowed_by", "error"},
        "status": {
            "provider", "requested", "fallback_reason", "heartbeat_at", "last_error", "jobs",
            "next_due",
        },
    }  # fmt: skip
    for name, fields in contract.items():
        section = cli_section(name)
        for field in fields:
            assert f"`{field}`" in section, f"{name}: the contract field {field} is not described"


def shell_examples() -> List[Any]:
    params = []
    for path in doc_files():
        for line, _attrs, code in blocks(path, "sh"):
            params.append(pytest.param(path, code, id=f"{path.relative_to(ROOT)}:{line}"))
    return params


INSTALL = re.compile(r"^(python3? -m )?pip install\b")


@pytest.mark.parametrize("path,code", shell_examples())
def test_shell_example_runs(
    path: Path, code: str, example_runs: ExampleRuns, request: pytest.FixtureRequest
) -> None:
    first = code.lstrip().splitlines()[0] if code.strip() else ""
    if first.startswith(NOT_RUN):
        assert len(first) > len(NOT_RUN) + 5, "say why the example does not run"
        return
    if INSTALL.match(first):
        return  # an install instruction: tox installs the package for real
    returncode, output = example_runs.result(request.node.nodeid)
    assert returncode == 0, f"{path.name}:\n{code}\n---\n{output}"


def test_the_job_record_in_concepts_has_the_real_fields(tmp_path: Path) -> None:
    """docs/concepts.md shows a jobs.json: its record has exactly the stored fields."""
    [doc] = [
        json.loads(code)
        for _l, _a, code in blocks(DOCS / "concepts.md", "json")
        if '"version": 1' in code
    ]
    home = tmp_path / "home"
    home.mkdir()
    hermes_cron(home, "add", "0 3 * * *", "--tz", "Europe/Paris", "--", "/bin/true")
    real = json.loads((home / "cron" / "jobs.json").read_text(encoding="utf-8"))
    assert set(doc) == set(real)
    assert set(doc["jobs"][0]) == set(real["jobs"][0])
    assert doc["jobs"][0]["schedule"].keys() == real["jobs"][0]["schedule"].keys()


def test_readme_starts_with_the_install_and_test_commands() -> None:
    """CI runs the README's test command: its first two sections stay as they are."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.findall(r"^## (.+)$", text, re.M)[:2] == ["Install and run", "Run the tests"]
    install, tests = text.split("## Install and run", 1)[1].split("## Run the tests", 1)
    assert "pip install . && hermes-cron daemon" in install
    command = (
        'python3 -m pip install "tox>=4.11" && '
        "python3 -m tox run-parallel --parallel 2 --parallel-no-spinner"
    )
    assert command in tests.split("\n## ", 1)[0]
    assert command.split(" && ")[1] in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
