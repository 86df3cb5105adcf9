"""Freeze a net's backbone and unfreeze its last blocks (transfer learning), for any rsdl net.

The backbone is everything but the head: a classifier's ``fc``/``classifier``, a U-Net's
decoder and segmentation head (its backbone is ``encoder``), a torchvision R-CNN's FPN, RPN and
RoI heads (its backbone is ``backbone.body``, the part ImageNet weights fill). Its blocks, in
forward order, are the stem and ``layer1..4`` for ResNets, the stages of ``features`` for
EfficientNet/MobileNet, the stem, the stages of ``blocks`` and the head convolution for timm's
EfficientNet/MobileNetV3 (smp's ``tu-`` encoders and the detectors' EfficientNet-Lite included),
and the parameterised children (ModuleLists expanded) otherwise (the detectors' MobileNetV3).
Frozen parameters have ``requires_grad = False``; batch-norm layers keep updating their running
statistics in train mode.
"""

from __future__ import annotations

from torch import nn


def _is_rcnn(net: nn.Module) -> bool:
    return hasattr(net, "roi_heads") and hasattr(net, "rpn")


def backbone_of(net: nn.Module) -> nn.Module:
    """The feature extractor: a U-Net's encoder, an R-CNN's FPN body, or the classifier itself
    minus its head."""
    if _is_rcnn(net):
        return net.backbone.body
    return net.encoder if hasattr(net, "encoder") else net


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _timm_blocks(model: nn.Module) -> list[nn.Module]:
    """A timm EfficientNet/MobileNetV3 (whole or features-only): stem, stages, head convolution."""
    stem = nn.ModuleList([model.conv_stem, model.bn1])
    head = nn.ModuleList([getattr(model, n) for n in ("conv_head", "bn2", "norm_head") if hasattr(model, n)])
    return [block for block in (stem, *model.blocks, head) if _has_parameters(block)]


def backbone_blocks(net: nn.Module) -> list[nn.Module]:
    """The backbone's blocks in forward order (the head excluded)."""
    backbone = backbone_of(net)
    if hasattr(backbone, "model") and hasattr(backbone.model, "conv_stem"):  # smp's timm universal encoder
        backbone = backbone.model
    if hasattr(backbone, "conv_stem") and isinstance(getattr(backbone, "blocks", None), nn.Sequential):
        return _timm_blocks(backbone)
    if hasattr(backbone, "layer4"):  # torchvision ResNet, smp's ResNet encoders
        return [
            nn.ModuleList([backbone.conv1, backbone.bn1]),
            *(getattr(backbone, f"layer{i}") for i in range(1, 5)),
        ]
    if isinstance(getattr(backbone, "features", None), nn.Sequential):  # EfficientNet, MobileNet
        return [block for block in backbone.features if _has_parameters(block)]
    blocks: list[nn.Module] = []
    head = head_of(net)
    for child in backbone.children():
        if child is head or not _has_parameters(child):
            continue
        blocks.extend(c for c in child if _has_parameters(c)) if isinstance(
            child, nn.ModuleList
        ) else blocks.append(child)
    return blocks


def head_of(net: nn.Module) -> nn.Module:
    """The part trained from scratch for the task."""
    if hasattr(net, "encoder"):
        return nn.ModuleList([net.decoder, net.segmentation_head])
    if _is_rcnn(net):
        return nn.ModuleList([net.backbone.fpn, net.rpn, net.roi_heads])
    for name in ("fc", "classifier", "head"):
        if hasattr(net, name):
            return getattr(net, name)
    raise ValueError(f"{type(net).__name__} has no head named fc, classifier or head.")


def set_trainable(modules: list[nn.Module], trainable: bool) -> None:
    for module in modules:
        for parameter in module.parameters():
            parameter.requires_grad = trainable


def freeze_backbone(net: nn.Module) -> None:
    """Freeze every backbone parameter; the head stays trainable."""
    set_trainable([backbone_of(net)], False)
    set_trainable([head_of(net)], True)


def unfreeze_last_blocks(net: nn.Module, count: int) -> list[nn.Module]:
    """Make the last ``count`` backbone blocks trainable again; returns them (for a param group)."""
    blocks = backbone_blocks(net)[-count:] if count > 0 else []
    set_trainable(blocks, True)
    return blocks
