"""The ``python -m training`` entry point.

``fit``, ``validate`` and ``test`` are LightningCLI's (YAML configs in training/configs/, any
option overridable as ``--section.key=value``); ``export``, ``evaluate``, ``explain`` and
``predict`` are handed to ``training.<command>.main(argv)``, imported only when asked for.

Defaults added to Lightning's: EarlyStopping, ModelCheckpoint (the best by val_loss, and
``last.ckpt`` as a link to the latest checkpoint written: Lightning 2.6 writes "last" only beside
a new best, so a copy would only duplicate it) and LearningRateMonitor as configurable sections;
gradient clipping at 1.0; CSV and TensorBoard logs that share one run folder
``<save_dir>/<name>/version_N``; and ``trainer.precision: null``, which picks bf16-mixed (or
16-mixed) on a CUDA GPU and 32-bit elsewhere.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any

LIGHTNING_COMMANDS = ("fit", "validate", "test")
DISPATCHED = {
    "export": "export an ONNX / TorchScript model with its spec from a checkpoint",
    "evaluate": "metrics JSON, confusion matrix and report figures for a checkpoint",
    "explain": "Integrated Gradients attributions (PNG overlays, GeoTIFF)",
    "predict": "headless batch prediction over rasters with the plugin's inference engine",
    "crossval": "k-fold spatial cross-validation: a fit per fold, pooled per-class metrics",
    "pretrain": "self-supervised pretraining (BYOL, SimCLR) of an encoder on unlabelled rasters",
    "compare": "checkpoints side by side: held-out metrics, size, CPU ms per chip, a chart",
}
USAGE = f"""usage: python -m training <command> [options]

Train and ship rsdl models (PyTorch Lightning).

commands:
  fit         train a model:  python -m training fit --config training/configs/<use case>.yaml
  validate    run the validation split on a checkpoint (--ckpt_path best.ckpt)
  test        run the test split on a checkpoint (--ckpt_path best.ckpt)
{chr(10).join(f"  {name:<11} {text}" for name, text in DISPATCHED.items())}

`python -m training <command> --help` lists a command's options.
Configs: {", ".join(sorted(p.stem for p in (Path(__file__).parent / "configs").glob("*.yaml")))}
"""
RUN_FOLDER = re.compile(r"^version_(\d+)$")


def auto_precision(accelerator: Any) -> str:
    """bf16-mixed on GPUs that have bf16, 16-mixed on other GPUs, 32-true on the CPU."""
    import torch

    wants_gpu = str(accelerator) in ("auto", "gpu", "cuda")
    if wants_gpu and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def next_version(folder: Path) -> str:
    numbers = [int(m.group(1)) for p in folder.glob("version_*") if (m := RUN_FOLDER.match(p.name))]
    return f"version_{max(numbers, default=-1) + 1}"


def share_run_folder(loggers: Any) -> None:
    """Loggers writing to the same save_dir/name get one version: one folder per run."""
    if not isinstance(loggers, list):
        return
    groups: dict[tuple[str, str], list[Any]] = {}
    for logger in loggers:
        arguments = getattr(logger, "init_args", None)
        if arguments is None or getattr(arguments, "version", None) is not None:
            continue
        key = (str(arguments.save_dir), str(getattr(arguments, "name", "") or ""))
        groups.setdefault(key, []).append(arguments)
    for (save_dir, name), members in groups.items():
        version = next_version(Path(save_dir) / name)
        for arguments in members:
            arguments.version = version


def cli_class() -> type:
    """The LightningCLI subclass (built on demand: Lightning and torch load only when training)."""
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

    from .tasks.base import MONITOR

    class RsdlCLI(LightningCLI):
        """LightningCLI with rsdl's callbacks, data-to-model links, precision and run folders."""

        @staticmethod
        def subcommands() -> dict[str, set[str]]:
            # Lightning's own "predict" is replaced by rsdl's (tiled inference over rasters).
            return {k: v for k, v in LightningCLI.subcommands().items() if k in LIGHTNING_COMMANDS}

        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            parser.add_lightning_class_args(EarlyStopping, "early_stopping")
            parser.set_defaults(
                {
                    "early_stopping.monitor": MONITOR,
                    "early_stopping.mode": "min",
                    "early_stopping.patience": 10,
                }
            )
            parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
            parser.set_defaults(
                {
                    "checkpoint.monitor": MONITOR,
                    "checkpoint.mode": "min",
                    "checkpoint.save_top_k": 1,
                    "checkpoint.save_last": "link",
                    "checkpoint.filename": "best-{epoch:03d}-{val_loss:.4f}",
                    "checkpoint.auto_insert_metric_name": False,
                }
            )
            parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
            parser.set_defaults({"lr_monitor.logging_interval": "epoch"})
            # The net is sized from the data: classes and bands come from the data module.
            parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
            parser.link_arguments("data.in_channels", "model.init_args.in_channels", apply_on="instantiate")

        def before_instantiate_classes(self) -> None:
            config = self.config[self.subcommand] if self.subcommand else self.config
            trainer = config.trainer
            if trainer.precision is None:
                trainer.precision = auto_precision(trainer.accelerator)
            share_run_folder(trainer.logger)

    return RsdlCLI


def _logger(class_name: str) -> dict[str, Any]:
    return {
        "class_path": f"lightning.pytorch.loggers.{class_name}",
        "init_args": {"save_dir": "runs", "name": "rsdl"},
    }


TRAINER_DEFAULTS = {
    "precision": None,
    "gradient_clip_val": 1.0,
    "max_epochs": 50,
    "log_every_n_steps": 10,
    "logger": [_logger("CSVLogger"), _logger("TensorBoardLogger")],
}


def run_lightning(argv: list[str]) -> int:
    from .data.base import RsdlDataModule
    from .tasks.base import RsdlTask

    cli_class()(
        RsdlTask,
        RsdlDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults=TRAINER_DEFAULTS,
        seed_everything_default=42,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        # Lightning warns when given the very arguments it would read from sys.argv.
        args=None if argv == sys.argv[1:] else argv,
    )
    return 0


def run_dispatched(command: str, argv: list[str]) -> int:
    """``training.<command>.main(argv)``, with a clear message when that module is missing."""
    module_name = f"training.{command}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        print(
            f"python -m training {command}: not available in this installation ({module_name} is missing).",
            file=sys.stderr,
        )
        return 2
    return int(module.main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command = argv[0]
    if command in DISPATCHED:
        return run_dispatched(command, argv[1:])
    if command not in LIGHTNING_COMMANDS:
        print(f"python -m training: unknown command {command!r}.\n\n{USAGE}", file=sys.stderr)
        return 2
    return run_lightning(argv)
