"""The segmentation net: a U-Net (segmentation-models-pytorch) with a choice of encoders.

``encoder`` is any smp encoder name; tested: resnet18, resnet34, efficientnet-b0, mobilenet_v2.
The net maps normalised float32 (N, C, H, W) to logits (N, classes, H, W); H and W must be
multiples of 32. Weights never download (``encoder_weights=None``); ``weights`` is an optional
local file with either a whole U-Net's state dict or an encoder's (e.g. torchvision's ResNet).
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
from torch import nn

from .weights import load_matching, read_weights

SUGGESTED_ENCODERS = ("resnet18", "resnet34", "efficientnet-b0", "mobilenet_v2")


def build_unet(encoder: str, in_channels: int, classes: int, weights: str | None = None) -> nn.Module:
    """A U-Net with randomly initialised (or locally loaded) weights."""
    try:
        net = smp.Unet(encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=classes)
    except KeyError as error:
        raise ValueError(f"Unknown encoder {encoder!r}; try one of {SUGGESTED_ENCODERS}.") from error
    if weights:
        state = read_weights(weights)
        whole_net = any(key.startswith(("encoder.", "decoder.")) for key in state)
        load_matching(net if whole_net else net.encoder, state)
    return net
