"""Local pretrained weights (training/nets/weights.py): read with weights_only, loaded where names and
shapes match, first convolutions adapted to the band count."""

from __future__ import annotations

import pickle

import pytest
import torch
import torchvision
from torch import nn

from training.nets import build_classifier, build_unet, load_matching, read_weights
from training.nets.weights import adapt_in_channels


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


def test_adapted_filters_repeat_rgb_over_the_bands_and_keep_a_grey_image_response():
    weight = torch.randn(8, 3, 3, 3)
    adapted = adapt_in_channels(weight, 5)
    assert adapted.shape == (8, 5, 3, 3)
    for band, source in enumerate([0, 1, 2, 0, 1]):
        assert torch.equal(adapted[:, band], weight[:, source] * (3 / 5))
    # With whole copies of R, G, B (6 bands), a constant image gives the RGB net's response.
    six = adapt_in_channels(weight, 6)
    torch.testing.assert_close(
        nn.functional.conv2d(torch.full((1, 6, 7, 7), 0.5), six),
        nn.functional.conv2d(torch.full((1, 3, 7, 7), 0.5), weight),
    )


def test_a_lightning_checkpoint_loads_without_its_net_prefix(tmp_path):
    layer = nn.Linear(3, 2)
    path = tmp_path / "task.ckpt"
    state = {f"net.{name}": value for name, value in layer.state_dict().items()}
    torch.save({"state_dict": {**state, "loss.class_weight": torch.ones(2)}, "epoch": 3}, path)
    assert set(read_weights(path)) == {"weight", "bias"}
    target = nn.Linear(3, 2)
    report = load_matching(target, read_weights(path))
    assert sorted(report.loaded) == ["bias", "weight"] and not report.missing
    assert torch.equal(target.weight, layer.weight)


def test_mismatched_tensors_are_skipped_and_nothing_fitting_is_refused(tmp_path):
    report = load_matching(nn.Linear(3, 2), {"weight": torch.zeros(5, 3), "bias": torch.zeros(2)})
    assert report.skipped == ["weight"] and report.loaded == ["bias"] and report.missing == ["weight"]
    with pytest.raises(ValueError, match="No tensor of the weights file fits"):
        load_matching(nn.Linear(3, 2), {"other.weight": torch.zeros(2, 3)})
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        read_weights(tmp_path / "absent.pth")
