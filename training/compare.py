"""Compare trained models side by side on one held-out split: quality, size and CPU speed.

    python -m training compare --config training/configs/x.yaml --split test \\
        --run scratch=runs/a/best.ckpt --run imagenet=runs/b/best.ckpt --output runs/compare_x

For each ``NAME=CHECKPOINT`` the command runs ``evaluate`` on the split (report in
``OUTPUT/NAME/``) and exports the net to ONNX as a release would (``OUTPUT/NAME/model.onnx``,
verified against torch). Then it times every file on the CPU through the plugin's own backend:
one chip at the model's tile size, after ``WARMUP_RUNS`` untimed runs, the median of
``--timed-runs``, the models taking turns chip by chip so that a busy moment falls on all alike. It
writes ``comparison.json``, ``comparison.md`` (a table: accuracy or IoU, per-class recall or IoU,
parameters, ONNX size, CPU ms per chip) and ``comparison.png`` (a chart of the same).

Timings are as good as the machine is quiet: the table states the CPU threads used and other
processes can inflate them. The models must share a task (all classifiers or all segmentation
nets); detectors are not compared here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rsdl_qgis_plugin.core.contract.model_spec import ModelType
from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.files.atomic_output import atomic_file

WARMUP_RUNS = 5
DEFAULT_TIMED_RUNS = 50
COMPARED_TYPES = (ModelType.CLASSIFIER, ModelType.SEGMENTOR, ModelType.REGRESSOR)


@dataclass(frozen=True)
class ComparedRun:
    """One model's row of the comparison."""

    name: str
    checkpoint: str
    architecture: str
    pretrained: str
    parameters: int
    onnx_mb: float
    cpu_ms_per_chip: float
    tile_size: int
    headline: str  # "accuracy" (classifiers) or "IoU of <class>"-style mean IoU (segmentation)
    headline_value: float | None
    per_class: dict[str, float | None]  # recall (classifiers) or IoU (segmentation) per class
    per_class_metric: str


def parse_run(text: str) -> tuple[str, Path]:
    """``NAME=CHECKPOINT`` as a pair; argparse reports a ValueError as a bad --run."""
    name, separator, checkpoint = text.partition("=")
    if not separator or not name or not checkpoint:
        raise argparse.ArgumentTypeError(f"--run takes NAME=CHECKPOINT, got {text!r}.")
    return name, Path(checkpoint)


def cpu_ms_per_chip(model_paths: Sequence[Path], timed_runs: int) -> list[float]:
    """Median milliseconds of one chip (at each model's own input size) through the plugin's CPU
    backend, per model. The models take turns, one chip each per round, so a busier moment of the
    machine falls on all of them alike rather than on whichever was timed then."""
    from rsdl_qgis_plugin.inference.backends import load_model

    backends = [load_model(path, device="cpu") for path in model_paths]
    rng = np.random.default_rng(0)
    chips = [
        rng.standard_normal((1, len(b.spec.bands), b.spec.tile_size, b.spec.tile_size)).astype(np.float32)
        for b in backends
    ]
    for backend, chip in zip(backends, chips):
        for _ in range(WARMUP_RUNS):
            backend.run(chip)
    times: list[list[float]] = [[] for _ in backends]
    for _ in range(timed_runs):
        for index, (backend, chip) in enumerate(zip(backends, chips)):
            start = time.perf_counter()
            backend.run(chip)
            times[index].append((time.perf_counter() - start) * 1000.0)
    return [statistics.median(values) for values in times]


def _pretrained(training: dict[str, Any]) -> str:
    source = training.get("pretrained") or {}
    if not source:
        return "none (from scratch)"
    return str(source.get("weights") or source.get("file") or source)


def _architecture(training: dict[str, Any], hparams: dict[str, Any]) -> str:
    net = training.get("net") or {}
    return str(net.get("architecture") or hparams.get("backbone") or hparams.get("encoder") or "?")


def compare_run(
    name: str, checkpoint: Path, config: Path, split: str, output: Path, device: str
) -> ComparedRun:
    """Evaluate and export one checkpoint (see the module docstring); its CPU time is measured with
    the others' afterwards (``cpu_ms_per_chip``)."""
    from .checkpoints import load_checkpoint_net, load_task
    from .evaluate import (
        dataloader,
        evaluate,
        find_metrics_csv,
        load_datamodule,
        with_model_normalisation,
    )
    from .export import export_onnx

    task = load_task(checkpoint)
    net, spec = load_checkpoint_net(checkpoint)
    if spec.model_type not in COMPARED_TYPES:
        raise RsdlError(
            f"'{checkpoint}' is a {spec.model_type.value}; compare takes classifiers and segmentation "
            "or regression nets (evaluate detectors with python -m training evaluate)."
        )
    folder = output / name
    metrics = evaluate(
        net,
        spec,
        dataloader(with_model_normalisation(load_datamodule(config), spec), split),
        folder,
        find_metrics_csv(checkpoint),
        device,
        split=split,
    )
    exported = export_onnx(net, spec, folder / "model.onnx")
    tile_size = exported.spec.tile_size
    classes = metrics["classes"]
    classification = spec.model_type is ModelType.CLASSIFIER
    per_class_metric = "recall" if classification else "iou"
    return ComparedRun(
        name=name,
        checkpoint=str(checkpoint),
        architecture=_architecture(spec.training, dict(task.hparams)),
        pretrained=_pretrained(spec.training),
        parameters=sum(p.numel() for p in net.parameters()),
        onnx_mb=exported.path.stat().st_size / 1e6,
        cpu_ms_per_chip=float("nan"),
        tile_size=tile_size,
        headline="accuracy" if classification else "mean IoU",
        headline_value=metrics["overall_accuracy"] if classification else metrics["mean_iou"],
        per_class={entry["name"]: entry[per_class_metric] for entry in classes},
        per_class_metric=per_class_metric,
    )


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown_table(runs: Sequence[ComparedRun], split: str, threads: int) -> str:
    """The comparison as a Markdown table (one row per run)."""
    classes = list(runs[0].per_class)
    metric = runs[0].per_class_metric
    header = (
        ["run", "net", "pretrained", runs[0].headline]
        + [f"{metric} {name}" for name in classes]
        + ["parameters (M)", "ONNX (MB)", "CPU ms / chip"]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 3 + "--:|" * (len(header) - 3)]
    for run in runs:
        cells = (
            [run.name, run.architecture, run.pretrained, _number(run.headline_value)]
            + [_number(run.per_class.get(name)) for name in classes]
            + [f"{run.parameters / 1e6:.2f}", f"{run.onnx_mb:.1f}", f"{run.cpu_ms_per_chip:.1f}"]
        )
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"Split `{split}`; CPU ms per chip: median of one {runs[0].tile_size} px chip through the plugin's "
        f"onnxruntime backend on {threads} CPU threads."
    )
    return "\n".join(lines) + "\n"


def comparison_figure(runs: Sequence[ComparedRun]) -> Any:
    """Two panels: the headline metric and per-class values per run; quality against CPU time."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2), layout="constrained")
    bars, scatter = figure.subplots(1, 2)
    classes = list(runs[0].per_class)
    width = 0.8 / (len(classes) + 1)
    positions = np.arange(len(runs))
    values = [run.headline_value or 0.0 for run in runs]
    bars.bar(positions, values, width, label=runs[0].headline, color="#444444")
    for index, name in enumerate(classes):
        shifted = positions + (index + 1) * width
        bars.bar(
            shifted,
            [run.per_class.get(name) or 0.0 for run in runs],
            width,
            label=f"{runs[0].per_class_metric} {name}",
        )
    bars.set_xticks(positions + width * len(classes) / 2, [run.name for run in runs], rotation=20, ha="right")
    bars.set_ylim(0, 1.2)  # room above the bars for the legend
    bars.set_yticks(np.linspace(0, 1, 6))
    bars.set_title("held-out quality")
    bars.legend(fontsize="small", loc="upper center", ncol=len(classes) + 1)
    bars.grid(axis="y", alpha=0.3)
    for run in runs:
        scatter.scatter(run.cpu_ms_per_chip, run.headline_value or 0.0, s=30 + 8 * run.onnx_mb, alpha=0.6)
        scatter.annotate(
            f"{run.name}\n{run.parameters / 1e6:.1f} M, {run.onnx_mb:.0f} MB",
            (run.cpu_ms_per_chip, run.headline_value or 0.0),
            fontsize="small",
            xytext=(6, 4),
            textcoords="offset points",
        )
    scatter.margins(x=0.25, y=0.25)  # room for the labels
    scatter.set_xlabel("CPU ms per chip (onnxruntime)")
    scatter.set_ylabel(runs[0].headline)
    scatter.set_title("quality against speed (marker area: ONNX size)")
    scatter.grid(alpha=0.3)
    return figure


def write_comparison(runs: Sequence[ComparedRun], output: Path, split: str) -> list[Path]:
    """``comparison.json``, ``comparison.md`` and ``comparison.png`` in ``output``, each whole or absent."""
    from .reports.figures import save_png

    threads = os.cpu_count() or 1
    table = markdown_table(runs, split, threads)
    payload = {"split": split, "cpu_threads": threads, "runs": [asdict(run) for run in runs]}
    written = []
    for filename, text in (
        ("comparison.json", json.dumps(payload, indent=2) + "\n"),
        ("comparison.md", table),
    ):
        with atomic_file(output / filename, sidecars=()) as temp:
            temp.write_text(text, encoding="utf-8")
        written.append(output / filename)
    written.append(save_png(comparison_figure(runs), output / "comparison.png"))
    return written


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training compare",
        description="Compare checkpoints on one held-out split: accuracy or IoU, per-class recall or IoU, "
        "parameters, ONNX size and CPU milliseconds per chip, as a table and a chart.",
    )
    parser.add_argument(
        "--run",
        action="append",
        required=True,
        type=parse_run,
        metavar="NAME=CHECKPOINT",
        help="a model to compare, named for the table; repeat for each model (at least two)",
    )
    parser.add_argument(
        "--config",
        required=True,
        type=Path,
        help="LightningCLI YAML whose 'data:' section builds the held-out data (the training config)",
    )
    parser.add_argument(
        "--split",
        choices=("val", "test"),
        default="test",
        help="which split to evaluate (default test; use val where the data have no test split)",
    )
    parser.add_argument("--output", required=True, type=Path, help="folder for the reports (created)")
    parser.add_argument(
        "--timed-runs",
        type=int,
        default=DEFAULT_TIMED_RUNS,
        help=f"chips timed per model; the median is reported (default {DEFAULT_TIMED_RUNS})",
    )
    parser.add_argument(
        "--device", default="cpu", help="where evaluation runs (cpu, cuda, auto); timing is always on the CPU"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training compare``: 0 when every run was compared and the reports written."""
    args = _parser().parse_args(argv)
    names = [name for name, _ in args.run]
    if len(set(names)) != len(names):
        print(f"compare failed: run names must differ, got {names}.", file=sys.stderr)
        return 2
    missing = [str(path) for _, path in args.run if not path.is_file()]
    if missing:
        print(f"compare failed: checkpoint(s) not found: {', '.join(missing)}.", file=sys.stderr)
        return 2
    if args.timed_runs < 1:
        print("compare failed: --timed-runs must be at least 1.", file=sys.stderr)
        return 2
    runs: list[ComparedRun] = []
    try:
        for name, checkpoint in args.run:
            print(f"{name}: evaluating and exporting {checkpoint} ...", flush=True)
            runs.append(compare_run(name, checkpoint, args.config, args.split, args.output, args.device))
        kinds = {run.per_class_metric for run in runs}
        if len(kinds) > 1:
            raise RsdlError("The checkpoints mix classifiers and segmentation nets; compare like with like.")
        print(f"timing {len(runs)} models on the CPU, taking turns ...", flush=True)
        models = [args.output / run.name / "model.onnx" for run in runs]
        timings = cpu_ms_per_chip(models, args.timed_runs)
        runs = [dataclasses.replace(run, cpu_ms_per_chip=ms) for run, ms in zip(runs, timings)]
        write_comparison(runs, args.output, args.split)
    except RsdlError as error:
        print(f"compare failed: {error}", file=sys.stderr)
        return 1
    print(markdown_table(runs, args.split, os.cpu_count() or 1))
    print(f"reports in {args.output} (comparison.md, comparison.json, comparison.png)")
    return 0
