"""The segmentation net: a U-Net (segmentation-models-pytorch) with a choice of encoders.

``encoder`` is any smp encoder name; tested: resnet18, resnet34, efficientnet-b0, mobilenet_v2,
tu-tf_efficientnet_lite0. The net maps normalised float32 (N, C, H, W) to logits
(N, classes, H, W); H and W must be multiples of 32. Weights never download
(``encoder_weights=None``); ``weights`` is an optional local file with either a whole U-Net's
state dict or an encoder's (e.g. torchvision's ResNet), or the name of bundled ImageNet weights
(``imagenet-efficientnet-lite0``, lite1, lite2; see :mod:`training.nets.imagenet`) for the
encoder ``tu-tf_efficientnet_lite0`` (lite1, lite2): smp's timm universal encoder, whose timm
model is loaded with them.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
from torch import nn

from .imagenet import imagenet_weights, is_imagenet_weights, load_imagenet_weights
from .weights import load_matching, read_weights

SUGGESTED_ENCODERS = ("resnet18", "resnet34", "efficientnet-b0", "mobilenet_v2", "tu-tf_efficientnet_lite0")
TIMM_UNIVERSAL_PREFIX = "tu-"


def build_unet(encoder: str, in_channels: int, classes: int, weights: str | None = None) -> nn.Module:
    """A U-Net with randomly initialised (or locally loaded) weights."""
    if is_imagenet_weights(weights) and encoder != imagenet_weights(weights).encoder:
        raise ValueError(
            f"Weights {weights!r} fit encoder {imagenet_weights(weights).encoder!r}, not {encoder!r}."
        )
    try:
        net = smp.Unet(encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=classes)
    except KeyError as error:
        raise ValueError(f"Unknown encoder {encoder!r}; try one of {SUGGESTED_ENCODERS}.") from error
    if is_imagenet_weights(weights):
        load_imagenet_weights(net.encoder.model, weights, encoder.removeprefix(TIMM_UNIVERSAL_PREFIX))
    elif weights:
        state = read_weights(weights)
        whole_net = any(key.startswith(("encoder.", "decoder.")) for key in state)
        load_matching(net if whole_net else net.encoder, state)
    return net
