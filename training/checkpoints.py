"""Rebuild a task (and its data module) from a Lightning checkpoint without unpickling anything.

``torch.load(weights_only=True)`` only: tensors and plain containers. The class is chosen by
the name in the ``_class_path`` hyperparameter among rsdl's own classes (the path itself is
never imported). A task is built from the saved hyperparameters with ``weights=None`` (the
pretrained file may not exist where the checkpoint is used, and the trained state dict replaces
it anyway), then given the saved state dict and spec.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch
from torch import nn

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec
from rsdl_qgis_plugin.core.errors import RsdlError

from .data import (
    ChipsDataModule,
    ImageFolderDataModule,
    ObjectChipsDataModule,
    RasterObjectsDataModule,
    RasterVectorDataModule,
    RsdlDataModule,
)
from .data.base import CLASS_PATH_KEY
from .tasks import TASKS, RsdlTask
from .tasks.base import SPEC_KEY

HPARAMS_KEY = "hyper_parameters"
DATA_HPARAMS_KEY = "datamodule_hyper_parameters"
DATAMODULES: dict[str, type[RsdlDataModule]] = {
    cls.__name__: cls
    for cls in (
        ChipsDataModule,
        RasterVectorDataModule,
        ImageFolderDataModule,
        ObjectChipsDataModule,
        RasterObjectsDataModule,
    )
}


class CheckpointNotFoundError(RsdlError, FileNotFoundError):
    """A checkpoint path that names no file: the commands report it in one line, as other bad input."""


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's content (``weights_only=True``) on the CPU."""
    path = Path(path)
    if not path.is_file():
        near = sorted(p.name for p in path.parent.glob("*.ckpt")) if path.parent.is_dir() else []
        hint = f" That folder holds: {', '.join(near)}." if near else ""
        raise CheckpointNotFoundError(f"Checkpoint '{path}' does not exist.{hint}")
    return torch.load(path, map_location="cpu", weights_only=True)


def _class_and_arguments(hparams: dict, classes: dict[str, type], what: str, path: Path) -> tuple[type, dict]:
    """The rsdl class a checkpoint's hyperparameters name, and its ``__init__`` arguments among them."""
    name = str(hparams.get(CLASS_PATH_KEY, "")).rpartition(".")[2]
    if name not in classes:
        raise ValueError(
            f"Checkpoint '{path}' names {what} {name or None!r} (hyperparameter '{CLASS_PATH_KEY}'); "
            f"rsdl rebuilds {', '.join(sorted(classes))}."
        )
    chosen = classes[name]
    accepted = inspect.signature(chosen.__init__).parameters
    return chosen, {k: v for k, v in hparams.items() if k in accepted and k != "self"}


def load_task(path: str | Path) -> RsdlTask:
    """The task saved at ``path``, in eval mode, with ``task.net`` and ``task.model_spec()`` ready."""
    checkpoint = read_checkpoint(path)
    task_class, arguments = _class_and_arguments(checkpoint.get(HPARAMS_KEY) or {}, TASKS, "task", Path(path))
    arguments["weights"] = None
    task = task_class(**arguments)
    task.load_state_dict(checkpoint["state_dict"])
    task.on_load_checkpoint(checkpoint)
    return task.eval()


def load_checkpoint_net(path: str | Path) -> tuple[nn.Module, ModelSpec]:
    """The net (eval mode) and spec of a checkpoint: what export, evaluate and explain run."""
    task = load_task(path)
    return task.net, task.model_spec()


def load_datamodule(path: str | Path, **overrides: object) -> RsdlDataModule:
    """The data module a checkpoint was trained on, normalised as the checkpoint's spec says.

    Built from ``datamodule_hyper_parameters`` (class chosen by name among rsdl's own);
    ``overrides`` replace arguments (e.g. ``num_workers=0``, ``cache_dir=...``).
    """
    checkpoint = read_checkpoint(path)
    hparams = checkpoint.get(DATA_HPARAMS_KEY) or {}
    data_class, arguments = _class_and_arguments(hparams, DATAMODULES, "data module", Path(path))
    if SPEC_KEY in checkpoint:
        spec = ModelSpec.from_metadata(checkpoint[SPEC_KEY])
        arguments.update(
            mean=list(spec.standardization_mean),
            std=list(spec.standardization_std),
            max_pixel_value=spec.max_pixel_value,
        )
    arguments.update(overrides)
    return data_class(**arguments)
