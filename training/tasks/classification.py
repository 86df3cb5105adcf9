"""ClassificationTask: transfer learning on torchvision ResNet / EfficientNet / MobileNet or timm's
EfficientNet-Lite (with the bundled ImageNet weights)."""

from __future__ import annotations

from typing import Any

from rsdl_qgis_plugin.core.contract.model_spec import ModelType

from ..data.classes import IGNORE_INDEX
from ..nets.classification import build_classifier
from ..nets.imagenet import LITE_ARCHITECTURES
from .base import RsdlTask
from .losses import build_loss


class ClassificationTask(RsdlTask):
    """One label per image (chip or photo).

    Args:
        num_classes, in_channels: linked from the data module by the CLI.
        backbone: resnet18/34/50, efficientnet_b0..b3, mobilenet_v2, mobilenet_v3_small/large
            (torchvision), or tf_efficientnet_lite0/1/2 (timm).
        weights: optional local torchvision weights file (e.g. ImageNet), or imagenet-efficientnet-lite0
            (lite1, lite2) for the matching tf_efficientnet_lite backbone; never downloaded.
        freeze_backbone: train only the new head first (transfer learning); off trains all.
        unfreeze_at_epoch, unfreeze_blocks, finetune_lr_factor: at that epoch the last N
            backbone blocks start training at finetune_lr_factor x the head's learning rate.
        loss: "ce" or "focal"; class_weights, focal_gamma, lr, weight_decay, lr_patience,
            lr_factor: as SegmentationTask.
    """

    task_name = "classification"
    target_key = "label"
    model_type = ModelType.CLASSIFIER

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        backbone: str = "resnet18",
        weights: str | None = None,
        freeze_backbone: bool = True,
        unfreeze_at_epoch: int = 1,
        unfreeze_blocks: int = 2,
        finetune_lr_factor: float = 0.1,
        loss: str = "ce",
        class_weights: str | list[float] | None = None,
        focal_gamma: float = 2.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        lr_patience: int = 3,
        lr_factor: float = 0.5,
    ) -> None:
        super().__init__(num_classes, in_channels, class_weights, lr, weight_decay, lr_patience, lr_factor)
        self.save_plain_hyperparameters()
        self.net = build_classifier(backbone, in_channels, num_classes, weights)
        self.loss = build_loss(loss, num_classes, IGNORE_INDEX, "multiclass", focal_gamma, segmentation=False)

    def spec_training_info(self) -> dict[str, Any]:
        info = super().spec_training_info()
        library = "timm" if self.hparams.backbone in LITE_ARCHITECTURES else "torchvision"
        info["net"] = {"architecture": self.hparams.backbone, "library": library}
        return info
