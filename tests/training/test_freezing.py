"""Freezing (training/nets/freezing.py): the backbone frozen, exactly the last blocks unfrozen."""

from __future__ import annotations

import torch

from training.nets import backbone_blocks, build_classifier, build_unet, freeze_backbone, unfreeze_last_blocks


def _trainable(module: torch.nn.Module) -> bool:
    return all(p.requires_grad for p in module.parameters())


def _frozen(module: torch.nn.Module) -> bool:
    return not any(p.requires_grad for p in module.parameters())


def test_freeze_backbone_then_unfreeze_last_blocks_of_a_resnet():
    net = build_classifier("resnet18", in_channels=3, num_classes=2)
    freeze_backbone(net)
    assert _trainable(net.fc)
    assert all(_frozen(block) for block in backbone_blocks(net))
    unfrozen = unfreeze_last_blocks(net, 2)
    assert unfrozen == [net.layer3, net.layer4]
    assert _trainable(net.layer3) and _trainable(net.layer4) and _trainable(net.fc)
    assert _frozen(net.layer2) and _frozen(net.conv1)


def test_freeze_and_unfreeze_efficientnet_stages():
    net = build_classifier("efficientnet_b0", in_channels=3, num_classes=2)
    freeze_backbone(net)
    unfreeze_last_blocks(net, 3)
    assert [_trainable(stage) for stage in net.features] == [False] * 6 + [True] * 3
    assert _trainable(net.classifier)


def test_freezing_a_unet_freezes_its_encoder_only():
    net = build_unet("resnet18", in_channels=3, classes=2)
    freeze_backbone(net)
    assert _frozen(net.encoder) and _trainable(net.decoder) and _trainable(net.segmentation_head)
    unfreeze_last_blocks(net, 1)
    assert _trainable(net.encoder.layer4) and _frozen(net.encoder.layer3)


def test_the_trainable_parameters_are_exactly_the_head_and_the_unfrozen_blocks():
    net = build_classifier("resnet18", in_channels=3, num_classes=2)
    freeze_backbone(net)
    assert unfreeze_last_blocks(net, 0) == []
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in net.fc.parameters()}
    blocks = backbone_blocks(net)
    assert len(blocks) == 5  # the stem and layer1..4
    unfreeze_last_blocks(net, len(blocks))
    assert all(p.requires_grad for p in net.parameters())
