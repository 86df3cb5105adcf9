"""Detection nets: torchvision's Faster R-CNN and Mask R-CNN on an FPN over MobileNetV3-large (from
scratch) or timm's EfficientNet-Lite0/1/2 (from scratch, or with the bundled ImageNet weights).

Architectures are ``<head>_<backbone>``: heads ``fasterrcnn`` (boxes) and ``maskrcnn`` (boxes and
instance masks), backbones ``mobilenet_v3`` (torchvision's MobileNetV3-large) and
``efficientnet_lite0`` / ``lite1`` / ``lite2`` (timm's ``tf_efficientnet_lite0`` ..., the
architecture the weights of :mod:`training.nets.imagenet` fit). Everything but the backbone is the
same: built from torchvision's own parts (``FeaturePyramidNetwork``, ``FasterRCNN``, ``MaskRCNN``,
``AnchorGenerator``), nothing downloads. The nets take normalised float32 chips and return
torchvision's detection dicts (``boxes`` x1, y1, x2, y2 in input pixels, ``labels`` 1-based, label 0
being background, ``scores``, and for Mask R-CNN ``masks`` [N, 1, H, W] probabilities).

Choices, and why:

* **Feature levels.** torchvision's ``fasterrcnn_mobilenet_v3_large_fpn`` feeds its FPN the
  outputs of MobileNetV3 blocks 13 and 16, which are both at stride 32: an 8 x 8 grid on a 256 px
  chip, too coarse for roofs and tree crowns of 10 to 40 px. Here the FPN takes strides 8, 16 and
  32 (MobileNetV3 blocks 4, 7 and 16; EfficientNet-Lite stages 2, 4 and 6, timm's feature levels
  2, 3, 4), plus the max-pool level at 64, and the anchors follow the levels (``ANCHOR_SIZES``: 16
  to 192 px, ratios 0.5, 1, 2).
* **No resize.** ``min_size = max_size = chip_size`` and the transform never resizes
  (:class:`ChipTransform`): the data are chips already, and a tile of another size must be seen at
  the trained pixel scale, not rescaled to the chip size (torchvision's transform would shrink a
  512 px tile to 256 px). ``image_mean`` 0 and ``image_std`` 1: the data are normalised already.
  The transform pads to a multiple of 32, so the TensorFlow "same" padding of the EfficientNet-Lite
  convolutions is the same at every tile size (and in the exported ONNX graph).
* **Other band counts.** MobileNetV3's stem convolution (``backbone.body["0"][0]``) is replaced by
  one with ``in_channels`` inputs (randomly initialised, like the rest of the net); timm builds
  EfficientNet-Lite with ``in_chans`` bands, and ImageNet weights adapt their RGB stem filters to
  them (timm's rule, see :mod:`training.nets.imagenet`).
* **ImageNet weights.** ``weights="imagenet-efficientnet-lite0"`` (lite1, lite2) loads the bundled
  weights into the backbone of the matching ``*_efficientnet_lite0`` detector: every tensor but the
  ImageNet head (which a features-only backbone has not), checked strictly. The FPN and the heads
  start random. Weights for another backbone are refused.
* **CPU speed and file size.** At most ``proposals`` region proposals per image at inference
  (300, where torchvision's default is 1000), ``box_detections_per_img`` objects out, and a box
  head of two ``BOX_HEAD_WIDTH`` (256) wide layers where torchvision's are 1024 wide: its first
  layer (256 x 7 x 7 inputs) held 12.8 M of the net's 19 M parameters (a 78 MB file), and the
  classes here are few.
* **BatchNorm, trainable, momentum 0.1** everywhere (torchvision's MobileNetV3 uses 0.01, tuned
  for long ImageNet runs: trained from scratch for a few hundred steps its running statistics would
  barely move; timm's EfficientNet-Lite has 0.1 already). The ImageNet backbones keep trainable
  BatchNorm too, where torchvision freezes it (``FrozenBatchNorm2d``) for its pretrained detection
  backbones: see :func:`_efficientnet_lite_body`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.models.mobilenetv3 import mobilenet_v3_large
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from .classification import _replace_first_conv
from .imagenet import (
    IMAGENET_WEIGHTS,
    create_lite,
    imagenet_weights,
    is_imagenet_weights,
    load_imagenet_weights,
)
from .weights import load_matching, read_weights

HEADS = ("fasterrcnn", "maskrcnn")
INSTANCE_HEAD = "maskrcnn"
# The backbone part of an architecture name -> timm's EfficientNet-Lite ("efficientnet_lite0" ->
# "tf_efficientnet_lite0"), or None for torchvision's MobileNetV3-large.
BACKBONES: dict[str, str | None] = {
    "mobilenet_v3": None,
    **{spec.architecture.removeprefix("tf_"): spec.architecture for spec in IMAGENET_WEIGHTS.values()},
}
DETECTORS = tuple(f"{head}_{backbone}" for backbone in BACKBONES for head in HEADS)
INSTANCE_DETECTORS = tuple(name for name in DETECTORS if name.startswith(f"{INSTANCE_HEAD}_"))
# MobileNetV3-large stages (backbone_utils' numbering) fed to the FPN: blocks 4, 7 and 16.
RETURNED_LAYERS = [2, 3, 5]
# timm's feature levels (feature_info) fed to the FPN: strides 8, 16 and 32.
TIMM_OUT_INDICES = (2, 3, 4)
FPN_STRIDES = [8, 16, 32]
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


class TimmFeatures(nn.Module):
    """A timm features-only model as an FPN body: its list of maps as the OrderedDict
    (``"0"``, ``"1"``, ...) that torchvision's ``IntermediateLayerGetter`` returns. The model is
    ``model`` (as in smp's timm encoders), so ``nets.freezing`` finds its stem and stages."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return OrderedDict((str(level), feature) for level, feature in enumerate(self.model(x)))


class BodyWithFPN(nn.Module):
    """torchvision's ``BackboneWithFPN`` for a given body (any module returning an OrderedDict of
    maps), where torchvision's cuts one out of a model with ``IntermediateLayerGetter``: the same
    ``body``, ``fpn`` and ``out_channels``, so the same state-dict keys. The FPN is ``FPN_CHANNELS``
    wide (torchvision's ``mobilenet_backbone`` fixes 256), with BatchNorm and a max-pool level."""

    def __init__(self, body: nn.Module, in_channels: list[int]) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(
            in_channels, FPN_CHANNELS, extra_blocks=LastLevelMaxPool(), norm_layer=nn.BatchNorm2d
        )
        self.out_channels = FPN_CHANNELS

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(self.body(x))


def _mobilenet_v3_body(in_channels: int) -> tuple[nn.Module, list[int]]:
    """MobileNetV3-large (untrained, trainable BatchNorm) cut at the ``RETURNED_LAYERS`` stages, and
    their channels."""
    features = mobilenet_v3_large(weights=None, norm_layer=nn.BatchNorm2d).features
    _replace_first_conv(features, in_channels)
    stages = [0] + [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)]
    stages.append(len(features) - 1)
    return_layers = {str(stages[stage]): str(level) for level, stage in enumerate(RETURNED_LAYERS)}
    channels = [features[stages[stage]].out_channels for stage in RETURNED_LAYERS]
    return IntermediateLayerGetter(features, return_layers), channels


def _efficientnet_lite_body(architecture: str, in_channels: int) -> tuple[nn.Module, list[int]]:
    """timm's EfficientNet-Lite, features only at strides 8, 16, 32, and their channels.

    BatchNorm stays trainable (timm's, momentum 0.1) with ImageNet weights too, where torchvision
    freezes it for pretrained detection backbones (2 photos of 800 px a GPU make noisy statistics):
    rsdl's inputs are standardised by their own band statistics (about twice the scale of the
    weights' (x - 127) / 128), extra bands come through an adapted stem and aerial images are not
    ImageNet's photos, so fixed ImageNet statistics would carry that shift through every ReLU6.
    Chips of 256 px in batches of 4 give at least 256 values a channel at stride 32, and a frozen
    backbone (``freeze_backbone``) still re-estimates its running statistics on the new data.
    """
    model = create_lite(architecture, features_only=True, out_indices=TIMM_OUT_INDICES, in_chans=in_channels)
    if model.feature_info.reduction() != FPN_STRIDES:
        raise ValueError(f"{architecture} gives strides {model.feature_info.reduction()}, not {FPN_STRIDES}.")
    return TimmFeatures(model), list(model.feature_info.channels())


def split_architecture(architecture: str) -> tuple[str, str]:
    """(head, backbone) of a detector name, e.g. ("maskrcnn", "efficientnet_lite0")."""
    if architecture not in DETECTORS:
        raise ValueError(f"Unknown detector {architecture!r}; choose one of {DETECTORS}.")
    head, _, backbone = architecture.partition("_")
    return head, backbone


def backbone_name(architecture: str) -> tuple[str, str]:
    """The backbone of a detector as the spec names it, and its library: e.g.
    ("tf_efficientnet_lite0_fpn", "timm")."""
    timm_name = BACKBONES[split_architecture(architecture)[1]]
    return ("mobilenet_v3_large_fpn", "torchvision") if timm_name is None else (f"{timm_name}_fpn", "timm")


def is_instance_detector(architecture: str) -> bool:
    """Whether ``architecture`` predicts instance masks."""
    return architecture in INSTANCE_DETECTORS


def _check_imagenet_weights(architecture: str, weights: str) -> None:
    """Refuse ImageNet weights made for another backbone than the detector's."""
    fits = imagenet_weights(weights).architecture  # raises on an unknown name
    if BACKBONES[split_architecture(architecture)[1]] != fits:
        detectors = " or ".join(f"{head}_{fits.removeprefix('tf_')}" for head in HEADS)
        raise ValueError(
            f"Weights {weights!r} fit the detectors {detectors} (backbone {fits!r}), not {architecture!r}."
        )


def build_detector(
    architecture: str,
    num_classes: int,
    in_channels: int = 3,
    chip_size: int = 256,
    box_detections_per_img: int = DEFAULT_DETECTIONS,
    proposals: int = DEFAULT_PROPOSALS,
    box_score_thresh: float = 0.05,
    box_nms_thresh: float = 0.5,
    weights: str | None = None,
) -> GeneralizedRCNN:
    """A torchvision R-CNN for ``num_classes`` object classes (background added as label 0).

    ``box_score_thresh`` and ``box_nms_thresh`` are the net's own filtering (torchvision's
    defaults); a deployment threshold (the spec's ``det_conf``) is applied after it. ``weights``:
    bundled ImageNet weights for the backbone (``imagenet-efficientnet-lite0`` for the
    ``*_efficientnet_lite0`` detectors ...), or a local state-dict file of a detector, loaded where
    names and shapes match; never downloaded.
    """
    _, backbone_part = split_architecture(architecture)
    if num_classes < 1:
        raise ValueError(f"A detector needs at least one object class, got {num_classes}.")
    if is_imagenet_weights(weights):
        _check_imagenet_weights(architecture, weights)
    timm_name = BACKBONES[backbone_part]
    if timm_name is None:
        body, channels = _mobilenet_v3_body(in_channels)
    else:
        body, channels = _efficientnet_lite_body(timm_name, in_channels)
    backbone = BodyWithFPN(body, channels)
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
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.1
    if is_imagenet_weights(weights):
        load_imagenet_weights(body.model, weights, timm_name)
    elif weights:
        load_matching(model, read_weights(weights))
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
