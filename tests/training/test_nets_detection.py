"""Detection nets (training/nets/detection.py): torchvision R-CNNs that never resize, any band count,
and the rsdl export layout."""

from __future__ import annotations

import pytest
import torch

from training.nets.detection import DETECTORS, RsdlLayout, build_detector


@pytest.mark.parametrize("architecture", DETECTORS)
def test_detectors_take_any_band_count_and_keep_the_pixel_scale(architecture):
    torch.manual_seed(0)
    net = build_detector(architecture, 2, in_channels=4, chip_size=64, box_detections_per_img=7).eval()
    stem = next(m for m in net.backbone.body.modules() if isinstance(m, torch.nn.Conv2d))
    assert stem.in_channels == 4
    x = torch.randn(1, 4, 96, 96)  # larger than the chip size: must not be shrunk to 64
    images, _ = net.transform([x[0]])
    assert tuple(images.tensors.shape) == (1, 4, 96, 96) and images.image_sizes == [(96, 96)]
    with torch.no_grad():
        result = net([x[0]])[0]
    assert len(result["boxes"]) <= 7 and (result["labels"] >= 1).all()
    assert ("masks" in result) == architecture.startswith("maskrcnn_")


@pytest.mark.parametrize("architecture", ["fasterrcnn_mobilenet_v3", "fasterrcnn_efficientnet_lite2"])
def test_the_fpn_sees_strides_8_to_64(architecture):
    """torchvision's preset feeds its FPN two stride-32 maps; small objects need finer levels."""
    net = build_detector(architecture, 1, chip_size=256)
    features = net.backbone(torch.zeros(1, 3, 256, 256))
    assert [f.shape[-1] for f in features.values()] == [32, 16, 8, 4]


def test_rsdl_layout_pads_to_n_rows_with_zero_scores():
    torch.manual_seed(0)
    net = build_detector("maskrcnn_mobilenet_v3", 2, chip_size=64, box_detections_per_img=30).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        boxes, scores, class_ids, masks = RsdlLayout(net)(x)
        direct = net(list(x))
    assert boxes.shape == (2, 30, 4) and scores.shape == (2, 30) and masks.shape == (2, 30, 64, 64)
    for item, result in enumerate(direct):
        count = len(result["scores"])
        assert torch.equal(scores[item, :count], result["scores"])
        assert torch.equal(class_ids[item, :count], result["labels"] - 1)  # 0-based classes
        assert (scores[item, count:] == 0).all() and (masks[item, count:] == 0).all()


def test_unknown_detectors_are_refused():
    with pytest.raises(ValueError, match="Unknown detector"):
        build_detector("yolo", 1)
