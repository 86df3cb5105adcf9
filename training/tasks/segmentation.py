"""SegmentationTask: a U-Net over chips, multi-class (softmax) or binary (one sigmoid channel)."""

from __future__ import annotations

from typing import Any

import torch

from rsdl_qgis_plugin.core.contract.model_spec import ModelType

from ..data.classes import IGNORE_INDEX
from ..nets.segmentation import build_unet
from .base import RsdlTask
from .losses import build_loss


class SegmentationTask(RsdlTask):
    """Semantic segmentation.

    Args:
        num_classes: classes of the data (the CLI links it from the data module). Binary mode
            needs 2 (background and the class) and predicts one channel.
        in_channels: input bands (linked from the data module).
        mode: "multiclass" (``num_classes`` softmax channels) or "binary" (one sigmoid channel).
        encoder: smp encoder name (resnet18, resnet34, efficientnet-b0, mobilenet_v2, ...).
        weights: optional local weights file (a U-Net or an encoder state dict); never downloaded.
        loss: "ce", "focal", "dice" or a sum such as "ce+dice"; ignored pixels never count.
        class_weights: cross-entropy weights per class: a list, "auto" (balanced, from the data's
            cached class statistics) or null.
        focal_gamma: focusing parameter of the focal loss.
        lr, weight_decay: AdamW; lr_patience, lr_factor: ReduceLROnPlateau on val_loss.
    """

    task_name = "segmentation"
    target_key = "mask"
    model_type = ModelType.SEGMENTOR

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        mode: str = "multiclass",
        encoder: str = "resnet18",
        weights: str | None = None,
        loss: str = "ce",
        class_weights: str | list[float] | None = None,
        focal_gamma: float = 2.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        lr_patience: int = 3,
        lr_factor: float = 0.5,
    ) -> None:
        super().__init__(num_classes, in_channels, class_weights, lr, weight_decay, lr_patience, lr_factor)
        if mode == "binary" and num_classes != 2:
            raise ValueError(
                f"Binary segmentation needs 2 classes (background and one class), got {num_classes}."
            )
        self.save_plain_hyperparameters()
        out_channels = 1 if mode == "binary" else num_classes
        self.net = build_unet(encoder, in_channels, out_channels, weights)
        self.loss = build_loss(loss, num_classes, IGNORE_INDEX, mode, focal_gamma)

    @property
    def binary(self) -> bool:
        return self.hparams.mode == "binary"

    def predict_classes(self, logits: torch.Tensor) -> torch.Tensor:
        if self.binary:  # sigmoid(x) >= seg_thresh, with the spec's threshold
            threshold = self.data_spec.one_channel_threshold if self.data_spec is not None else 0.5
            return (torch.sigmoid(logits[:, 0]) >= threshold).long()
        return logits.argmax(dim=1)

    def spec_training_info(self) -> dict[str, Any]:
        info = super().spec_training_info()
        info.update(
            net={
                "architecture": "Unet",
                "encoder": self.hparams.encoder,
                "library": "segmentation-models-pytorch",
            },
            mode=self.hparams.mode,
            output_activation="sigmoid" if self.binary else "softmax",
        )
        return info
