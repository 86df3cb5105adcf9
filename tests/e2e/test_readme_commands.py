"""Every command the docs show is run here, or checked as far as it can be, or excluded with a reason.

Every command written in the docs is exercised by a test or by the demo. The docs are README.md,
ARCHITECTURE.md, docs/*.md, models/README.md and the "Use" section of every models/*/MODEL_CARD.md.
A command is every line of a fenced block but a ```text one (a trailing ``\\`` continues it; a
```python block is one Python snippet) and every inline code span that starts with a program in
``PROGRAMS``. Each is:

* ``qgis_process[.bin] run rsdl:<alg> -- KEY=VALUE ...``: run as written, in one folder per
  document holding the input files the docs name (``inputs``), the document's commands in order
  (mask.tif and classes.tif come from earlier ones). Every KEY must be a parameter of the
  algorithm (qgis_process silently ignores unknown ones), the run must exit 0 and every output it
  names must be written. Only ``/path/to/x``, the reader's own file, is replaced (by the input x).
  ``help`` and ``plugins enable`` lines are run as written too; ``export QGIS_PLUGINPATH`` is what
  the qgis_process fixture does.
* ``python -m training ...``: ``--help`` (or no command) runs as written; other commands need a
  checkpoint or a fit, so their options are parsed by the command's own parser (LightningCLI with
  ``--print_config``, training/<command>.py's ``_parser()``), and a fit's ``--config`` must be one
  that tests/training/test_cli.py fits with fast_dev_run.
* ``make ...``: every target is listed by ``make help`` (``test-qgis-%`` covers ``test-qgis-3.44``)
  and ``make -n`` accepts the line
  (``make demo`` and ``make test`` themselves run in CI and tests/e2e/test_demo.py).
* a ```python snippet runs in this Python (it sees the packages that QGIS's Python sees).
* a command starting with a prefix of ``EXCLUDED`` is not run, for the reason given there.

Anything else fails ``test_every_command_in_the_docs_is_run_or_excluded``: a new command in the
docs must be run here or excluded with a reason.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from osgeo import gdal

from scripts.qgis_process_runner import QgisProcess
from tests import detector_models
from tests.conftest import SHARED_DATA
from tests.training.test_cli import FITTED_CONFIGS
from training import cli as training_cli

REPO = Path(__file__).resolve().parents[2]
SENTINEL2_MOSAIC = SHARED_DATA / "rsgislib_aber_s2/sen2_20210527_aber_mosaic.vrt"
SENTINEL2_INPUT = "sentinel2_10band.tif"
QGIS_PROCESS = {"qgis_process", "qgis_process.bin"}  # the runner calls the working binary for both
PYTHON = re.compile(r"python(3(\.\d+)?)?")
PROGRAMS = QGIS_PROCESS | {"make", "export", "sudo", "apt", "apt-get", "pip", "pip3", "torchrun", "srun"}

# Commands that cannot run here (prefix of the command as written -> why).
EXCLUDED = {
    "sudo apt install ": "installs Debian packages as root (`make install` installs what the repo needs)",
    "/usr/bin/python3 -m pip install ": "installs from PyPI into the user's site-packages (network); "
    "tests/e2e/test_missing_dependencies.py checks the command the plugin prints",
    "python3 -m pip install ": "the same, for Ubuntu 22.04 / Debian 11",
    "python -m pip install ": "Windows: typed in QGIS's OSGeo4W Shell",
    "/Applications/QGIS.app/": "macOS: the QGIS.app bundle's own Python",
    "env PATH=/usr/bin:/bin qgis": "starts QGIS desktop with the system Python first; "
    "tests/e2e/test_foreign_python.py checks that rule for qgis_process",
    "torchrun ": "starts a fit on several nodes; the fit is the CLI that tests/training/test_cli.py runs",
    "srun ": "starts a fit under SLURM on several nodes, as torchrun",
}
# Fenced blocks that show something other than commands (first line -> what they show).
NOT_COMMANDS = {
    "OUTPUT/": "the chip folder layout",
    "Running ONNX models needs": "the message a missing package gives",
}
# `<same config>` in a Lightning command: any fitted config shows that its other options parse.
PLACEHOLDER_CONFIG = f"training/configs/{FITTED_CONFIGS[0]}.yaml"
FENCE = re.compile(r"^\s*```\s*(\w*)")
SPAN = re.compile(r"`([^`]+)`")
PLACEHOLDER = re.compile(r"<[^<>\n]*>")


@dataclass(frozen=True)
class DocCommand:
    """A command as a document writes it; ``where`` is ``document:line``."""

    where: str
    text: str
    python_code: bool = False

    @property
    def document(self) -> str:
        return self.where.rsplit(":", 1)[0]

    @property
    def words(self) -> list[str]:
        """Shell words (comments dropped; ``<placeholders>`` kept whole); [] when unparseable."""
        quoted = PLACEHOLDER.sub(lambda match: shlex.quote(match.group()), self.text)
        try:
            return shlex.split(quoted, comments=True)
        except ValueError:
            return []


def split_assignments(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """Leading ``NAME=value`` words (environment for the command) and the command itself."""
    environment: dict[str, str] = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        name, _, value = words[0].partition("=")
        environment[name] = value
        words = words[1:]
    return environment, words


def _is_program(word: str) -> bool:
    name = Path(word).name
    return name in PROGRAMS or bool(PYTHON.fullmatch(name))


def _block_commands(document: str, block: list[tuple[int, str]], language: str) -> list[DocCommand]:
    if not block or language == "text":  # a ```text block is a diagram or output, not commands
        return []
    if language == "python":
        return [DocCommand(f"{document}:{block[0][0]}", "\n".join(line for _, line in block), True)]
    first = next((line.strip() for _, line in block if line.strip()), "")
    if first.startswith(tuple(NOT_COMMANDS)):
        return []
    commands, pending, start = [], "", 0
    for number, line in block:
        text = line.strip()
        if not pending and (not text or text.startswith("#")):
            continue
        start = start if pending else number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        commands.append(DocCommand(f"{document}:{start}", pending + text))
        pending = ""
    return commands


def extract_commands(document: str, text: str) -> list[DocCommand]:
    """The commands of one document, in order (see the module docstring)."""
    commands: list[DocCommand] = []
    prose: list[str] = []  # the text outside fences, fenced lines blanked so line numbers stay
    block: list[tuple[int, str]] | None = None
    language = ""
    for number, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line)
        if fence and block is None:
            block, language = [], fence.group(1)
        elif fence:
            commands += _block_commands(document, block, language)
            block = None
        elif block is not None:
            block.append((number, line))
        prose.append("" if fence or block is not None else line)
    joined = "\n".join(prose)
    for match in SPAN.finditer(joined):  # a span may wrap onto the next line
        span = " ".join(match.group(1).split())
        _, words = split_assignments(DocCommand("", span).words)
        if len(words) > 1 and _is_program(words[0]):
            commands.append(DocCommand(f"{document}:{joined.count(chr(10), 0, match.start()) + 1}", span))
    return sorted(commands, key=lambda command: int(command.where.rsplit(":", 1)[1]))


def _use_section(card: str) -> str:
    """Only the model card's "## Use" section; the lines before it blanked (numbers stay)."""
    lines = card.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "## Use"), len(lines))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n" * start + "\n".join(lines[start:end])


def documented_commands() -> list[DocCommand]:
    """Every command of README.md, ARCHITECTURE.md, docs/*.md, models/README.md and the model cards'
    Use sections."""
    paths = [
        REPO / "README.md",
        REPO / "ARCHITECTURE.md",
        *sorted((REPO / "docs").glob("*.md")),
        REPO / "models/README.md",
    ]
    texts = {path: path.read_text(encoding="utf-8") for path in paths}
    for card in sorted(REPO.glob("models/*/MODEL_CARD.md")):
        texts[card] = _use_section(card.read_text(encoding="utf-8"))
    return [
        command
        for path, text in texts.items()
        for command in extract_commands(path.relative_to(REPO).as_posix(), text)
    ]


def kind(command: DocCommand) -> str:
    """How a command is exercised: ``excluded``, ``qgis_process <action>``, ``training``, ``make``,
    ``export``, ``python`` (a snippet), or ``unknown``."""
    if command.python_code:
        return "python"
    if command.text.startswith(tuple(EXCLUDED)):
        return "excluded"
    _, words = split_assignments(command.words)
    program = Path(words[0]).name if words else ""
    if program in QGIS_PROCESS and words[1:2] in (["run"], ["help"], ["plugins"]):
        return f"qgis_process {words[1]}"
    if program == "make":
        return "make"
    if program == "export":
        return "export"
    if PYTHON.fullmatch(program) and words[1:3] == ["-m", "training"]:
        return "training"
    return "unknown"


COMMANDS = documented_commands()
QGIS_COMMANDS = [command for command in COMMANDS if kind(command).startswith(("qgis_process ", "export"))]
LOCAL_COMMANDS = [command for command in COMMANDS if kind(command) in ("training", "make", "python")]


def test_every_command_in_the_docs_is_run_or_excluded():
    unknown = [f"{command.where}: {command.text}" for command in COMMANDS if kind(command) == "unknown"]
    assert not unknown, (
        "Commands in the docs that tests/e2e/test_readme_commands.py neither runs nor excludes: "
        + "; ".join(unknown)
    )
    # A parser that found nothing would pass vacuously: the README has commands of every kind.
    readme_kinds = {kind(command) for command in COMMANDS if command.document == "README.md"}
    assert {
        "qgis_process run",
        "qgis_process help",
        "qgis_process plugins",
        "training",
        "make",
    } <= readme_kinds


# -- qgis_process ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, sample_scene, test_models) -> Path:
    """The input files the docs' commands name, made once."""
    folder = tmp_path_factory.mktemp("doc_inputs")
    for name in ("scene.tif", "labels.gpkg"):
        shutil.copy(sample_scene / name, folder / name)
    shutil.copy(test_models["fcn_seg.onnx"], folder / "model.onnx")  # a 3-band segmentation model
    shutil.copy(test_models["classifier.onnx"], folder / "classifier.onnx")
    detector_models.yolov8_detector(folder / "detector.onnx")  # a YOLOv8-layout detector, 3 bands
    # buildings.gpkg: the scene's building footprints, a polygon layer for rsdl:classifyfeatures.
    gdal.VectorTranslate(
        str(folder / "buildings.gpkg"),
        str(folder / "labels.gpkg"),
        options=gdal.VectorTranslateOptions(
            layers=["landcover"], where="class_name = 'building'", layerName="buildings"
        ),
    )
    # tile.tif (a model card's input): a 32 m corner of the scene keeps the released model quick.
    gdal.Translate(str(folder / "tile.tif"), str(folder / "scene.tif"), srcWin=[0, 0, 64, 64])
    # sentinel2_10band.tif (the Sentinel-2 card's input): a 640 m window of the real 10-band mosaic.
    if SENTINEL2_MOSAIC.is_file():
        gdal.Translate(str(folder / SENTINEL2_INPUT), str(SENTINEL2_MOSAIC), srcWin=[400, 400, 64, 64])
    return folder


@dataclass
class Shell:
    """What the qgis_process commands run with: the runner, the per-document folders, the
    algorithms' parameters (name -> is it an output) and a scratch folder."""

    qgis_process: QgisProcess
    inputs: Path
    scratch: Path
    folders: dict[str, Path] = field(default_factory=dict)
    described: dict[str, dict[str, bool]] = field(default_factory=dict)

    def folder(self, document: str) -> Path:
        """The document's working folder (README's buildings.gpkg is an input, a model card's an
        output): the inputs, and ``models/`` as in the repository, for the card's model paths."""
        if document not in self.folders:
            self.folders[document] = self.scratch / re.sub(r"\W", "_", document)
            shutil.copytree(self.inputs, self.folders[document])
            (self.folders[document] / "models").symlink_to(REPO / "models")
        return self.folders[document]

    def parameters(self, algorithm: str) -> dict[str, bool]:
        """qgis_process accepts unknown parameters silently: ``help --json`` says what exists."""
        if algorithm not in self.described:
            stdout = self.qgis_process.run("help", algorithm, "--json").stdout
            parameters = json.loads(stdout[stdout.find("{") :])["parameters"]
            self.described[algorithm] = {name: p["is_destination"] for name, p in parameters.items()}
        return self.described[algorithm]

    def words(self, command: DocCommand) -> list[str]:
        """The arguments after the program; ``/path/to/x``, the docs' stand-in for the reader's
        own file, becomes the prepared input x."""
        words = split_assignments(command.words)[1][1:]
        return [re.sub(r"/path/to/(?:[^/\s]+/)*", "", word) for word in words]


@pytest.fixture(scope="module")
def shell(qgis_process, inputs, tmp_path_factory) -> Shell:
    return Shell(qgis_process, inputs, tmp_path_factory.mktemp("doc_commands"))


def _written(path: Path) -> bool:
    return (path.is_file() and path.stat().st_size > 0) or (path.is_dir() and any(path.iterdir()))


def _run_algorithm(command: DocCommand, shell: Shell) -> None:
    words = shell.words(command)
    if "--" not in words:  # prose naming an algorithm (`qgis_process run rsdl:segment`): it exists
        _check_help(command, ["help", words[1]], shell)
        return
    folder = shell.folder(command.document)
    arguments = [word.partition("=") for word in words[words.index("--") + 1 :]]
    parameters = shell.parameters(words[1])
    unknown = [name for name, equals, _ in arguments if not equals or name not in parameters]
    assert not unknown, f"{command.where}: {words[1]} has no parameter {unknown}: fix the docs"
    result = shell.qgis_process.run(*words, check=False, cwd=folder)
    assert result.returncode == 0, (
        f"{command.where} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    outputs = [value for name, _, value in arguments if parameters[name] and value != "TEMPORARY_OUTPUT"]
    missing = [output for output in outputs if not _written(folder / output)]
    assert not missing, f"{command.where} did not write {missing}"


def _check_help(command: DocCommand, words: list[str], shell: Shell) -> None:
    result = shell.qgis_process.run(*words, check=False)
    assert result.returncode == 0 and "Arguments" in result.stdout, f"{command.where}:\n{result.stderr}"


def _show_help(command: DocCommand, shell: Shell) -> None:
    _check_help(command, shell.words(command), shell)


def _manage_plugins(command: DocCommand, shell: Shell) -> None:
    # A new HOME: the line run as a first-time user runs it, before anything enabled the plugin.
    plugins = Path(shell.qgis_process.env["QGIS_PLUGINPATH"])
    first_time = QgisProcess(plugins, shell.scratch / f"home_{command.where.replace(':', '_')}")
    result = first_time.run(*shell.words(command), check=False)
    assert result.returncode == 0, f"{command.where}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"


def _set_plugin_path(command: DocCommand, shell: Shell) -> None:
    # `export QGIS_PLUGINPATH=/path/to/...` is what the qgis_process fixture does for every call
    # here, the placeholder made real: the folder the plugin is staged in.
    name, _, value = split_assignments(command.words)[1][1].partition("=")
    assert name == "QGIS_PLUGINPATH" and value.startswith("/path/to/"), f"{command.where}: unknown export"
    assert (Path(shell.qgis_process.env[name]) / "rsdl_qgis_plugin" / "metadata.txt").is_file()


QGIS_ACTIONS = {
    "qgis_process run": _run_algorithm,
    "qgis_process help": _show_help,
    "qgis_process plugins": _manage_plugins,
    "export": _set_plugin_path,
}


@pytest.mark.qgis_process
@pytest.mark.parametrize("command", QGIS_COMMANDS, ids=lambda command: command.where)
def test_qgis_process_command(command, shell):
    if SENTINEL2_INPUT in command.text and not SENTINEL2_MOSAIC.is_file():
        pytest.skip(f"real test data not found at {SHARED_DATA} (the Sentinel-2 input comes from it)")
    QGIS_ACTIONS[kind(command)](command, shell)


# -- training, make, export, Python snippets ---------------------------------------------------------


def _option_values(words: list[str], option: str) -> list[str]:
    values = [word.split("=", 1)[1] for word in words if word.startswith(option + "=")]
    return values + [words[i + 1] for i, word in enumerate(words[:-1]) if word == option]


def _check_training(command: DocCommand) -> None:
    arguments = split_assignments(command.words)[1][3:]
    if not arguments or {"-h", "--help"} & set(arguments):  # cheap: run as written
        result = subprocess.run(
            [sys.executable, "-m", "training", *arguments],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"{command.where}:\n{result.stderr[-3000:]}"
        return
    subcommand, options = arguments[0], arguments[1:]
    if subcommand in training_cli.DISPATCHED and not options:  # prose naming the command
        return
    if subcommand in training_cli.DISPATCHED:
        parser = importlib.import_module(f"training.{subcommand}")._parser()
        code, output = _exit_code(lambda: parser.parse_args(options))
        assert code == 0, f"{command.where}: python -m training {subcommand} refuses its options:\n{output}"
        return
    assert subcommand in training_cli.LIGHTNING_COMMANDS, f"{command.where}: no command {subcommand!r}"
    for config in _option_values(options, "--config"):
        if not PLACEHOLDER.search(config):  # a fit is exercised by test_cli on the same config
            assert (REPO / config).is_file(), f"{command.where}: {config} does not exist"
            assert Path(config).stem in FITTED_CONFIGS, (
                f"{command.where}: tests/training/test_cli.py fits no {config}"
            )
    options = [
        PLACEHOLDER_CONFIG if PLACEHOLDER.fullmatch(word) and "config" in word else word for word in options
    ]
    # --print_config parses every option against the config's classes, then stops before fitting.
    code, output = _exit_code(lambda: training_cli.main([subcommand, *options, "--print_config"]))
    assert code == 0 and "class_path" in output, (
        f"{command.where}: LightningCLI refuses the options:\n{output[-3000:]}"
    )


def _exit_code(call: Callable[[], object]) -> tuple[object, str]:
    """Run an argument parser: (its SystemExit code, 0 when it returns; what it printed)."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "LightningCLI's args parameter")  # given on purpose
        try:
            call()
        except SystemExit as stop:
            return stop.code, output.getvalue()
    return 0, output.getvalue()


@cache
def make_targets() -> frozenset[str]:
    """The targets ``make help`` lists."""
    listing = subprocess.run(["make", "help"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return frozenset(line.split()[0] for line in listing.splitlines() if line.strip())


def _check_make(command: DocCommand) -> None:
    environment, words = split_assignments(command.words)
    targets = [word for word in words[1:] if "=" not in word and not word.startswith("-")]
    listed = [re.compile(re.escape(target).replace("%", ".+") + "$") for target in make_targets()]
    unlisted = [target for target in targets if not any(pattern.match(target) for pattern in listed)]
    assert targets and not unlisted, f"{command.where}: not in `make help`: {unlisted}"
    result = subprocess.run(
        ["make", "-n", *words[1:]],
        cwd=REPO,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"{command.where}: make -n failed:\n{result.stderr[-2000:]}"


def _check_python(command: DocCommand) -> None:
    result = subprocess.run([sys.executable, "-c", command.text], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{command.where}:\n{result.stderr[-2000:]}"


LOCAL_CHECKS = {"training": _check_training, "make": _check_make, "python": _check_python}


@pytest.mark.parametrize("command", LOCAL_COMMANDS, ids=lambda command: command.where)
def test_command(command):
    LOCAL_CHECKS[kind(command)](command)
