"""The U-Net (training/nets/segmentation.py): shapes for every suggested encoder, and local weights."""

from __future__ import annotations

import pytest
import torch

from training.nets import SUGGESTED_ENCODERS, build_unet


@pytest.mark.parametrize("encoder", SUGGESTED_ENCODERS)
def test_unet_encoders_map_bands_to_class_logits(encoder):
    net = build_unet(encoder, in_channels=4, classes=3).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 4, 64, 64)).shape == (1, 3, 64, 64)


def test_a_whole_unet_state_dict_loads_into_encoder_and_decoder(tmp_path):
    torch.manual_seed(0)
    source = build_unet("resnet18", in_channels=3, classes=2)
    path = tmp_path / "unet.pth"
    torch.save(source.state_dict(), path)
    torch.manual_seed(1)  # a different initialisation, so a load that did nothing would show
    loaded = build_unet("resnet18", in_channels=3, classes=2, weights=str(path))
    for name, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_unknown_encoders_are_refused_with_suggestions():
    with pytest.raises(ValueError, match=r"Unknown encoder 'no-such-net'.*resnet18"):
        build_unet("no-such-net", in_channels=3, classes=2)
