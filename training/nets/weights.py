"""Pretrained weights from a local file only (never downloaded), read without unpickling.

A file may hold a plain state dict, or a checkpoint with one under ``state_dict`` (Lightning's
``net.`` prefix is stripped). Tensors load where names and shapes match; a first convolution
made for another number of input bands is adapted (its RGB filters repeated over the bands and
rescaled, as segmentation-models-pytorch does); other mismatches, such as a 1000-class head,
are skipped and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

NET_PREFIX = "net."


@dataclass
class WeightsReport:
    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in a local weights file (``torch.load(weights_only=True)``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Weights file '{path}' does not exist (weights are never downloaded).")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"'{path}' does not hold a state dict of tensors.")
    if any(k.startswith(NET_PREFIX) for k in state):
        state = {k[len(NET_PREFIX) :]: v for k, v in state.items() if k.startswith(NET_PREFIX)}
    return state


def adapt_in_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Conv filters (out, c, kh, kw) for ``in_channels`` inputs: channels repeated, rescaled by c / in."""
    old = weight.shape[1]
    index = torch.arange(in_channels) % old
    return weight[:, index] * (old / in_channels)


def load_matching(module: nn.Module, state: dict[str, torch.Tensor]) -> WeightsReport:
    """Copy the tensors of ``state`` that fit ``module`` (see the module docstring)."""
    report = WeightsReport()
    own = module.state_dict()
    accepted: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        target = own.get(name)
        if target is None:
            report.skipped.append(name)
        elif target.shape == tensor.shape:
            accepted[name] = tensor
            report.loaded.append(name)
        elif (
            tensor.ndim == 4
            and target.ndim == 4
            and tensor.shape[0] == target.shape[0]
            and tensor.shape[2:] == target.shape[2:]
        ):
            accepted[name] = adapt_in_channels(tensor, target.shape[1])
            report.adapted.append(name)
        else:
            report.skipped.append(name)
    module.load_state_dict(accepted, strict=False)
    report.missing = [name for name in own if name not in accepted]
    if not accepted:
        raise ValueError("No tensor of the weights file fits the net: is it for another architecture?")
    return report
