"""The segmentation net: a U-Net (segmentation-models-pytorch) with a choice of encoders.

``encoder`` is any smp encoder name; tested: resnet18, resnet34, efficientnet-b0, mobilenet_v2,
tu-tf_efficientnet_lite0. The net maps normalised float32 (N, C, H, W) to logits
(N, classes, H, W); H and W must be multiples of 32. Weights never download
(``encoder_weights=None``); ``weights`` is an optional local file with either a whole U-Net's
state dict or an encoder's (e.g. torchvision's ResNet), or the name of bundled ImageNet weights
(``imagenet-efficientnet-lite0``, lite1, lite2; see :mod:`training.nets.imagenet`) for the
encoder ``tu-tf_efficientnet_lite0`` (lite1, lite2): smp's timm universal encoder, whose timm
model (``net.encoder.model``) is loaded with them. An encoder file of ``python -m training
pretrain`` loads strictly there too (:mod:`training.nets.pretrained`); other encoder state dicts
for a ``tu-`` encoder load into that timm model as well.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
from torch import nn

from .imagenet import imagenet_weights, is_imagenet_weights, load_imagenet_weights
from .pretrained import load_pretrain_file, read_pretrain_file
from .weights import load_matching, read_weights

SUGGESTED_ENCODERS = ("resnet18", "resnet34", "efficientnet-b0", "mobilenet_v2", "tu-tf_efficientnet_lite0")
TIMM_UNIVERSAL_PREFIX = "tu-"


def build_unet(encoder: str, in_channels: int, classes: int, weights: str | None = None) -> nn.Module:
    """A U-Net with randomly initialised (or locally loaded) weights."""
    if is_imagenet_weights(weights) and encoder != imagenet_weights(weights).encoder:
        raise ValueError(
            f"Weights {weights!r} fit encoder {imagenet_weights(weights).encoder!r}, not {encoder!r}."
        )
    timm_universal = encoder.startswith(TIMM_UNIVERSAL_PREFIX)
    architecture = encoder.removeprefix(TIMM_UNIVERSAL_PREFIX)
    pretrain = read_pretrain_file(weights)
    if pretrain is not None:
        pretrain.check_fits(architecture if timm_universal else None, f"encoder {encoder!r}")
    try:
        net = smp.Unet(encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=classes)
    except KeyError as error:
        raise ValueError(f"Unknown encoder {encoder!r}; try one of {SUGGESTED_ENCODERS}.") from error
    if is_imagenet_weights(weights):
        load_imagenet_weights(net.encoder.model, weights, architecture)
    elif pretrain is not None:
        load_pretrain_file(net.encoder.model, pretrain, architecture)
    elif weights:
        state = read_weights(weights)
        load_matching(_weights_target(net, state, timm_universal), state)
    return net


def _weights_target(net: nn.Module, state: dict, timm_universal: bool) -> nn.Module:
    """The part of the U-Net whose names the state dict's keys follow."""
    if any(key.startswith(("encoder.", "decoder.")) for key in state):
        return net
    # smp's timm universal encoder holds the timm model at .model: a timm state dict
    # (conv_stem.*, blocks.*) fits that, a saved smp encoder (model.conv_stem.*) the encoder.
    if timm_universal and not any(key.startswith("model.") for key in state):
        return net.encoder.model
    return net.encoder
