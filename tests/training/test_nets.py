"""Nets: shapes for every backbone family, local weights (weights_only), freezing."""

from __future__ import annotations

import pickle

import pytest
import torch
import torchvision

from training.nets import (
    SUGGESTED_ENCODERS,
    backbone_blocks,
    build_classifier,
    build_unet,
    freeze_backbone,
    read_weights,
    unfreeze_last_blocks,
)


def _trainable(module: torch.nn.Module) -> bool:
    return all(p.requires_grad for p in module.parameters())


def _frozen(module: torch.nn.Module) -> bool:
    return not any(p.requires_grad for p in module.parameters())


@pytest.mark.parametrize("encoder", SUGGESTED_ENCODERS)
def test_unet_encoders_map_bands_to_class_logits(encoder):
    net = build_unet(encoder, in_channels=4, classes=3).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 4, 64, 64)).shape == (1, 3, 64, 64)


@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet_b0", "mobilenet_v2", "mobilenet_v3_small"])
def test_classifiers_take_any_band_count(backbone):
    net = build_classifier(backbone, in_channels=5, num_classes=4).eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 5, 64, 64)).shape == (2, 4)


@pytest.mark.parametrize("backbone", ["mobilenet_v3_small", "efficientnet_b0"])
def test_from_scratch_batch_norm_statistics_catch_up_within_a_short_run(backbone):
    # Regression: with torchvision's momentum 0.01 the running mean is ~26 % of the data's after
    # 30 steps, and a from-scratch net predicts one class in eval mode.
    net = build_classifier(backbone, in_channels=3, num_classes=2).train()
    first_norm = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    batch = torch.randn(4, 3, 32, 32) + 5.0
    with torch.no_grad():
        for _ in range(30):
            net(batch)
        conv = net.features[0][0]
        batch_mean = conv(batch).mean(dim=(0, 2, 3))
    assert torch.allclose(first_norm.running_mean, batch_mean, rtol=0.1, atol=0.05)


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A torchvision-format resnet18 weights file (random values stand in for ImageNet's)."""
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def test_classifier_loads_local_weights_and_adapts_the_first_conv(resnet18_file):
    state = torch.load(resnet18_file, weights_only=True)
    net = build_classifier("resnet18", in_channels=4, num_classes=3, weights=str(resnet18_file))
    assert torch.equal(net.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    rgb = state["conv1.weight"]
    expected = torch.cat([rgb, rgb[:, :1]], dim=1) * 3 / 4  # bands R, G, B, R; rescaled
    assert torch.allclose(net.conv1.weight, expected)
    assert net.fc.out_features == 3  # the 1000-class head is not loaded


def test_unet_loads_an_encoder_weights_file(resnet18_file):
    state = torch.load(resnet18_file, weights_only=True)
    net = build_unet("resnet18", in_channels=3, classes=2, weights=str(resnet18_file))
    assert torch.equal(net.encoder.layer2[0].conv1.weight, state["layer2.0.conv1.weight"])


def test_weights_files_are_never_unpickled(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "hook": pickle.loads(pickle.dumps(range(3)))}, path)
    with pytest.raises(pickle.UnpicklingError):
        read_weights(path)


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
