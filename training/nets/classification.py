"""Classification nets: torchvision ResNet, EfficientNet and MobileNet with a new head.

Built with ``weights=None`` (nothing downloads); an optional local file of torchvision weights
(e.g. ImageNet ``resnet18-*.pth``) is loaded into the backbone. The first convolution takes any
number of bands (pretrained RGB filters adapted), the head outputs ``num_classes`` logits:
normalised float32 (N, C, H, W) -> (N, num_classes).
"""

from __future__ import annotations

import torchvision
from torch import nn

from .weights import load_matching, read_weights

BACKBONES = (
    "resnet18",
    "resnet34",
    "resnet50",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
)


def _replace_first_conv(net: nn.Module, in_channels: int) -> None:
    name, conv = next((n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d))
    if conv.in_channels == in_channels:
        return
    parent = net.get_submodule(name.rpartition(".")[0]) if "." in name else net
    replacement = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        conv.bias is not None,
    )
    setattr(parent, name.rpartition(".")[2], replacement)


def _replace_head(net: nn.Module, num_classes: int) -> None:
    if isinstance(getattr(net, "fc", None), nn.Linear):
        net.fc = nn.Linear(net.fc.in_features, num_classes)
        return
    last = net.classifier[-1]
    net.classifier[-1] = nn.Linear(last.in_features, num_classes)


def build_classifier(
    backbone: str, in_channels: int, num_classes: int, weights: str | None = None
) -> nn.Module:
    """A torchvision classifier for ``in_channels`` bands and ``num_classes`` classes."""
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone {backbone!r}; choose one of {BACKBONES}.")
    net = getattr(torchvision.models, backbone)(weights=None)
    _replace_first_conv(net, in_channels)
    _replace_head(net, num_classes)
    if weights:
        load_matching(net, read_weights(weights))
    else:
        # torchvision's MobileNetV3/EfficientNet use BatchNorm momentum 0.01, tuned for long
        # ImageNet schedules: trained from scratch for a few hundred steps, their running
        # statistics stay near the initial values and the net predicts one class in eval mode.
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = 0.1
    return net
