"""k-fold spatial cross-validation: one fit per fold, each fold's held-out blocks evaluated, the
confusion matrices pooled into one per-class report.

    python -m training crossval --config training/configs/aber_landcover.yaml --output runs/aber_cv \\
        [--folds 5] [-- <extra fit options, e.g. --trainer.max_epochs=40>]

The config's data module must support ``folds``/``fold`` (RasterVectorDataModule does): fold k holds
out the k-th group of ground blocks. Each fold is fitted by ``python -m training fit`` in its own
process (a fresh seed state and memory per fold) with its best checkpoint in ``<output>/fold_<k>``,
then evaluated there by ``training.evaluate`` on its held-out split with non-overlapping chips
(stride = chip size), so every held-out pixel counts once. Writes into the output folder:

* ``fold_<k>/``: the fold's checkpoints and its evaluation report (metrics.json, figures);
* ``cv_metrics.json``: per-fold metrics and the pooled confusion matrix with per-class IoU, F1,
  precision and recall, overall accuracy, kappa and mean IoU (over classes present);
* ``cv_confusion_matrix.png``: the pooled matrix.

Pooling the matrices (rather than averaging fold scores) weights each held-out pixel equally and
stays defined when a fold's held-out blocks lack a class, as sparse polygon labels often do.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.files.atomic_output import atomic_file
from rsdl_qgis_plugin.core.metrics.confusion import ConfusionMatrix
from rsdl_qgis_plugin.core.reports.confusion_chart import confusion_figure

from .reports.figures import save_png

CHECKPOINT_PATTERN = "best-*.ckpt"


def fit_fold(config: Path, folds: int, fold: int, folder: Path, extra: Sequence[str]) -> Path:
    """Fit fold ``fold`` of ``folds`` in a child process; returns its best checkpoint."""
    for stale in folder.glob(CHECKPOINT_PATTERN):
        stale.unlink()  # a rerun must not pick up an earlier run's checkpoint
    command = [
        sys.executable,
        "-m",
        "training",
        "fit",
        "--config",
        str(config),
        f"--data.init_args.folds={folds}",
        f"--data.init_args.fold={fold}",
        f"--checkpoint.dirpath={folder}",
        *extra,
    ]
    print(f"\n== fold {fold + 1}/{folds}: {' '.join(command[1:])}", flush=True)
    if subprocess.run(command, check=False).returncode != 0:
        raise RsdlError(f"Fitting fold {fold} failed (see the output above); command: {' '.join(command)}")
    found = sorted(folder.glob(CHECKPOINT_PATTERN))
    if not found:
        raise RsdlError(f"Fold {fold} finished without a best checkpoint in '{folder}'.")
    return found[-1]


def evaluate_fold(checkpoint: Path, output: Path, device: str) -> dict[str, Any]:
    """The fold's held-out split, evaluated by training.evaluate with non-overlapping chips."""
    from .checkpoints import load_checkpoint_net, load_datamodule
    from .evaluate import dataloader, evaluate

    net, spec = load_checkpoint_net(checkpoint)
    # The spec records the split and the chip size: no second data module (or checkpoint read).
    if (spec.training.get("split") or {}).get("folds", 0) < 2:
        raise RsdlError(f"'{checkpoint}' was not trained with folds >= 2; it has no held-out fold.")
    # The spec's tile size is the chip size: a stride of one chip counts each held-out pixel once.
    datamodule = load_datamodule(checkpoint, stride=spec.tile_size)
    return evaluate(net, spec, dataloader(datamodule, "val"), output, device=device)


def pool(fold_results: Sequence[dict[str, Any]]) -> tuple[ConfusionMatrix, list[str]]:
    """The sum of the folds' confusion matrices (rows reference, columns prediction)."""
    names = fold_results[0]["confusion_matrix"]["classes"]
    if any(r["confusion_matrix"]["classes"] != names for r in fold_results):
        raise RsdlError("The folds' evaluations have different class lists; they cannot be pooled.")
    total = sum(np.asarray(r["confusion_matrix"]["values"], dtype=np.int64) for r in fold_results)
    return ConfusionMatrix(tuple(range(len(names))), np.asarray(total)), names


def report(fold_results: Sequence[dict[str, Any]], output: Path) -> dict[str, Any]:
    """Write cv_metrics.json and cv_confusion_matrix.png; returns the JSON document."""
    matrix, names = pool(fold_results)
    document = {
        "folds": len(fold_results),
        "pooled": matrix.as_dict(dict(enumerate(names))),
        "per_fold": [
            {
                "fold": index,
                "checkpoint": result["checkpoint"],
                "labelled": result["labelled"],
                "mean_iou": result["mean_iou"],
                "overall_accuracy": result["overall_accuracy"],
                "iou": {c["name"]: c["iou"] for c in result["classes"]},
            }
            for index, result in enumerate(fold_results)
        ],
    }
    with atomic_file(output / "cv_metrics.json", sidecars=()) as temp:
        temp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    title = f"Confusion matrix, {len(fold_results)}-fold spatial CV ({matrix.total:,} pixels)"
    save_png(confusion_figure(matrix.matrix, names, title), output / "cv_confusion_matrix.png")
    return document


def summary_table(document: dict[str, Any]) -> str:
    """Markdown: per-class IoU for each fold and pooled."""
    names = [c["name"] for c in document["pooled"]["classes"]]
    folds = document["per_fold"]
    header = "| class | " + " | ".join(f"fold {f['fold']}" for f in folds) + " | pooled |"
    lines = [header, "|" + "---|" * (len(folds) + 2)]

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    for position, name in enumerate(names):
        pooled = document["pooled"]["classes"][position]["iou"]
        per_fold = " | ".join(cell(f["iou"].get(name)) for f in folds)
        lines.append(f"| {name} | {per_fold} | {cell(pooled)} |")
    lines.append(
        "| mean IoU | "
        + " | ".join(cell(f["mean_iou"]) for f in folds)
        + f" | {cell(document['pooled']['mean_iou'])} |"
    )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training crossval",
        description="k-fold spatial cross-validation: fit every fold, evaluate its held-out blocks, "
        "pool the confusion matrices (cv_metrics.json, cv_confusion_matrix.png). Options after "
        "'--' go to every fit.",
    )
    parser.add_argument("--config", required=True, type=Path, help="the training YAML (LightningCLI)")
    parser.add_argument("--output", required=True, type=Path, help="folder for folds and reports (created)")
    parser.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    parser.add_argument(
        "--evaluate-only",
        action="store_true",
        help="skip fitting; evaluate the best checkpoints already in <output>/fold_<k>",
    )
    parser.add_argument("--device", default="auto", help="torch device for evaluation (default auto)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training crossval``: 0 when every fold was fitted, evaluated and pooled."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    split_at = arguments.index("--") if "--" in arguments else len(arguments)
    args = _parser().parse_args(arguments[:split_at])
    extra = arguments[split_at + 1 :]
    if args.folds < 2:
        print("error: --folds must be at least 2", file=sys.stderr)
        return 2
    try:
        results = []
        for fold in range(args.folds):
            folder = args.output / f"fold_{fold}"
            folder.mkdir(parents=True, exist_ok=True)
            if args.evaluate_only:
                found = sorted(folder.glob(CHECKPOINT_PATTERN))
                if not found:
                    raise RsdlError(f"No {CHECKPOINT_PATTERN} in '{folder}'; run without --evaluate-only.")
                checkpoint = found[-1]
            else:
                checkpoint = fit_fold(args.config, args.folds, fold, folder, extra)
            result = evaluate_fold(checkpoint, folder / "evaluation", args.device)
            results.append({**result, "checkpoint": str(checkpoint)})
        document = report(results, args.output)
    except RsdlError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"\n{summary_table(document)}\n\nwritten: {args.output / 'cv_metrics.json'}")
    return 0
