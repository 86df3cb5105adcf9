"""Classification nets: torchvision ResNet/EfficientNet/MobileNet or timm EfficientNet-Lite, new head.

Built with ``weights=None`` / ``pretrained=False`` (nothing downloads). ``weights`` is either an
optional local file of torchvision weights (e.g. ImageNet ``resnet18-*.pth``), loaded into the
backbone, or the name of bundled ImageNet weights (``imagenet-efficientnet-lite0``, lite1,
lite2; see :mod:`training.nets.imagenet`) for the matching backbone ``tf_efficientnet_lite0``
(lite1, lite2), or an encoder file of ``python -m training pretrain`` for the backbone it was
pretrained as (loaded strictly, see :mod:`training.nets.pretrained`). The first convolution takes
any number of bands (pretrained RGB filters adapted), the head outputs ``num_classes`` logits:
normalised float32 (N, C, H, W) -> (N, num_classes).
"""

from __future__ import annotations

import torchvision
from torch import nn

from .imagenet import (
    LITE_ARCHITECTURES,
    create_lite,
    imagenet_weights,
    is_imagenet_weights,
    load_imagenet_weights,
)
from .pretrained import load_pretrain_file, read_pretrain_file
from .weights import load_matching, read_weights

TORCHVISION_BACKBONES = (
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
# timm's TensorFlow-padded EfficientNet-Lite: the architecture the bundled ImageNet weights fit.
BACKBONES = TORCHVISION_BACKBONES + LITE_ARCHITECTURES


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


def _small_head(head: nn.Linear) -> None:
    """Re-initialise a new timm head as torchvision's MobileNets do (normal, std 0.01; bias 0).

    timm's EfficientNet draws it uniform in +-1/sqrt(classes): +-0.71 for 2 classes, which on 1280
    pooled features gives logits of about 10 and a first loss of 3.5 (ln 2 = 0.69 expected); with a
    frozen backbone the head then spends its whole first phase shrinking them.
    """
    nn.init.normal_(head.weight, std=0.01)
    nn.init.zeros_(head.bias)


def build_classifier(
    backbone: str, in_channels: int, num_classes: int, weights: str | None = None
) -> nn.Module:
    """A classifier for ``in_channels`` bands and ``num_classes`` classes (see the module docstring)."""
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone {backbone!r}; choose one of {BACKBONES}.")
    pretrain = read_pretrain_file(weights)
    if pretrain is not None:
        pretrain.check_fits(backbone, f"backbone {backbone!r}")
    if backbone in LITE_ARCHITECTURES:
        # timm's BatchNorm momentum is already 0.1, so a from-scratch net needs no change.
        net = create_lite(backbone, num_classes=num_classes, in_chans=in_channels)
        _small_head(net.classifier)
        if is_imagenet_weights(weights):
            load_imagenet_weights(net, weights, backbone)
        elif pretrain is not None:
            load_pretrain_file(net, pretrain, backbone)
        elif weights:
            load_matching(net, read_weights(weights))
        return net
    if is_imagenet_weights(weights):
        raise ValueError(
            f"Weights {weights!r} fit backbone {imagenet_weights(weights).architecture!r}, not {backbone!r}."
        )
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
