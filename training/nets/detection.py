"""Detection nets: torchvision's Faster R-CNN and Mask R-CNN on a MobileNetV3-large FPN, from scratch.

Built from torchvision's own parts (``BackboneWithFPN``, ``FasterRCNN``,
``MaskRCNN``, ``AnchorGenerator``) with ``weights=None`` (nothing downloads) and trainable
BatchNorm everywhere. The nets take normalised float32 chips and return torchvision's
detection dicts (``boxes`` x1, y1, x2, y2 in input pixels, ``labels`` 1-based, label 0 being
background, ``scores``, and for Mask R-CNN ``masks`` [N, 1, H, W] probabilities).

Choices, and why:

* **Feature levels.** torchvision's ``fasterrcnn_mobilenet_v3_large_fpn`` feeds its FPN the
  outputs of MobileNetV3 blocks 13 and 16, which are both at stride 32: an 8 x 8 grid on a 256 px
  chip, too coarse for roofs and tree crowns of 10 to 40 px. Here the FPN takes blocks 4, 7 and 16
  (strides 8, 16, 32, plus the max-pool level at 64) and the anchors follow the levels
  (``ANCHOR_SIZES``: 16 to 192 px, ratios 0.5, 1, 2).
* **No resize.** ``min_size = max_size = chip_size`` and the transform never resizes
  (:class:`ChipTransform`): the data are chips already, and a tile of another size must be seen at
  the trained pixel scale, not rescaled to the chip size (torchvision's transform would shrink a
  512 px tile to 256 px). ``image_mean`` 0 and ``image_std`` 1: the data are normalised already.
* **Other band counts.** The stem convolution (``backbone.body["0"][0]``) is replaced by one with
  ``in_channels`` inputs (randomly initialised, like the rest of the net).
* **CPU speed and file size.** At most ``proposals`` region proposals per image at inference
  (300, where torchvision's default is 1000), ``box_detections_per_img`` objects out, and a box
  head of two ``BOX_HEAD_WIDTH`` (256) wide layers where torchvision's are 1024 wide: its first
  layer (256 x 7 x 7 inputs) held 12.8 M of the net's 19 M parameters (a 78 MB file), and the
  classes here are few.
* **BatchNorm momentum 0.1** (torchvision's MobileNetV3 uses 0.01, tuned for long ImageNet runs:
  trained from scratch for a few hundred steps its running statistics would barely move).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.models.mobilenetv3 import mobilenet_v3_large
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from .classification import _replace_first_conv

DETECTORS = ("fasterrcnn_mobilenet_v3", "maskrcnn_mobilenet_v3")
INSTANCE_DETECTORS = ("maskrcnn_mobilenet_v3",)
# MobileNetV3-large stages (backbone_utils' numbering) fed to the FPN: blocks 4, 7 and 16.
RETURNED_LAYERS = [2, 3, 5]
# Per FPN level (strides 8, 16, 32 and the pool at 64); every level needs the same count.
ANCHOR_SIZES = ((16, 24), (32, 48), (64, 96), (128, 192))
ASPECT_RATIOS = (0.5, 1.0, 2.0)
DEFAULT_PROPOSALS = 300
FPN_CHANNELS = 128  # torchvision's FPN is 256 wide: a quarter of the cost in the FPN, RPN and heads
ROI_SIZE = 7  # torchvision's RoI pooling output side for the box head
DEFAULT_DETECTIONS = 100
BOX_HEAD_WIDTH = 256  # the box head's hidden layers (torchvision: 1024)
BOX_SAMPLES = 128  # RoIs per chip the box head trains on (torchvision: 512, made for 800 px photos)


class ChipTransform(GeneralizedRCNNTransform):
    """torchvision's R-CNN transform without its resize: chips and tiles keep their pixel scale."""

    def resize(
        self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        return image, target


def _backbone() -> BackboneWithFPN:
    """MobileNetV3-large (untrained, trainable BatchNorm) with an FPN of ``FPN_CHANNELS`` over the
    ``RETURNED_LAYERS`` stages and a max-pool level: torchvision's ``mobilenet_backbone``, whose FPN
    is fixed at 256 channels, built from the same parts."""
    features = mobilenet_v3_large(weights=None, norm_layer=nn.BatchNorm2d).features
    stages = [0] + [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)]
    stages.append(len(features) - 1)
    return_layers = {str(stages[stage]): str(level) for level, stage in enumerate(RETURNED_LAYERS)}
    in_channels = [features[stages[stage]].out_channels for stage in RETURNED_LAYERS]
    return BackboneWithFPN(
        features,
        return_layers,
        in_channels,
        FPN_CHANNELS,
        extra_blocks=LastLevelMaxPool(),
        norm_layer=nn.BatchNorm2d,
    )


def is_instance_detector(architecture: str) -> bool:
    """Whether ``architecture`` predicts instance masks."""
    return architecture in INSTANCE_DETECTORS


def build_detector(
    architecture: str,
    num_classes: int,
    in_channels: int = 3,
    chip_size: int = 256,
    box_detections_per_img: int = DEFAULT_DETECTIONS,
    proposals: int = DEFAULT_PROPOSALS,
    box_score_thresh: float = 0.05,
    box_nms_thresh: float = 0.5,
) -> GeneralizedRCNN:
    """A torchvision R-CNN for ``num_classes`` object classes (background added as label 0).

    ``box_score_thresh`` and ``box_nms_thresh`` are the net's own filtering (torchvision's
    defaults); a deployment threshold (the spec's ``det_conf``) is applied after it.
    """
    if architecture not in DETECTORS:
        raise ValueError(f"Unknown detector {architecture!r}; choose one of {DETECTORS}.")
    if num_classes < 1:
        raise ValueError(f"A detector needs at least one object class, got {num_classes}.")
    backbone = _backbone()
    options = {
        "min_size": chip_size,
        "max_size": chip_size,
        "image_mean": [0.0] * in_channels,
        "image_std": [1.0] * in_channels,
        "rpn_anchor_generator": AnchorGenerator(ANCHOR_SIZES, (ASPECT_RATIOS,) * len(ANCHOR_SIZES)),
        "rpn_pre_nms_top_n_test": proposals,
        "rpn_post_nms_top_n_test": proposals,
        "rpn_pre_nms_top_n_train": 2 * proposals,
        "rpn_post_nms_top_n_train": 2 * proposals,
        "box_batch_size_per_image": BOX_SAMPLES,
        "box_detections_per_img": box_detections_per_img,
        "box_score_thresh": box_score_thresh,
        "box_nms_thresh": box_nms_thresh,
        "box_head": TwoMLPHead(backbone.out_channels * ROI_SIZE**2, BOX_HEAD_WIDTH),
        "box_predictor": FastRCNNPredictor(BOX_HEAD_WIDTH, num_classes + 1),
    }
    model_class = FasterRCNN
    if is_instance_detector(architecture):
        model_class = MaskRCNN
        # torchvision's mask head and predictor at the FPN's width (its defaults are 256 wide).
        options["mask_head"] = MaskRCNNHeads(FPN_CHANNELS, (FPN_CHANNELS,) * 4, 1)
        options["mask_predictor"] = MaskRCNNPredictor(FPN_CHANNELS, FPN_CHANNELS, num_classes + 1)
    model = model_class(backbone, None, **options)
    model.transform = ChipTransform(chip_size, chip_size, [0.0] * in_channels, [1.0] * in_channels)
    _replace_first_conv(model, in_channels)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.1
    return model


class RsdlLayout(nn.Module):
    """A detector's results in rsdl's layout (core/contract/detection_layouts.py), for export.

    [B, C, H, W] -> ``boxes`` [B, N, 4] (x1, y1, x2, y2 in input pixels), ``scores`` [B, N],
    ``class_ids`` [B, N] (0-based: torchvision's labels - 1) and, for Mask R-CNN, ``masks``
    [B, N, H, W] probabilities; rows sorted by score, padded with zeros to N =
    ``box_detections_per_img`` (score 0 marks padding). Padding is a concatenation and a slice to
    N rows, so the traced graph has static row counts.
    """

    def __init__(self, detector: GeneralizedRCNN) -> None:
        super().__init__()
        self.detector = detector
        self.rows = int(detector.roi_heads.detections_per_img)
        self.masks = detector.roi_heads.has_mask()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        results = self.detector(list(x))
        boxes, scores, class_ids, masks = [], [], [], []
        for result in results:
            boxes.append(torch.cat([result["boxes"], x.new_zeros((self.rows, 4))])[: self.rows])
            scores.append(torch.cat([result["scores"], x.new_zeros((self.rows,))])[: self.rows])
            labels = result["labels"] - 1
            class_ids.append(torch.cat([labels, labels.new_zeros((self.rows,))])[: self.rows])
            if self.masks:
                blank = torch.zeros_like(x[0, 0]).expand(self.rows, -1, -1)
                masks.append(torch.cat([result["masks"][:, 0], blank])[: self.rows])
        outputs = [torch.stack(boxes), torch.stack(scores), torch.stack(class_ids)]
        if self.masks:
            outputs.append(torch.stack(masks))
        return tuple(outputs)
