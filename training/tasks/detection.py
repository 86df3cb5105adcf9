"""DetectionTask: object detection and instance segmentation with torchvision's R-CNNs.

Batches are ``{"image": [B, C, H, W], "targets": [{"boxes", "class_ids"(, "masks")}, ...]}``
(``training.data.objects.collate_objects``): boxes x1, y1, x2, y2 in chip pixels, 0-based object
classes. The R-CNNs keep label 0 for the background, so the task adds 1 going in and subtracts it
coming out.

Losses: torchvision computes them only in train mode. ``train_loss`` is the sum of its loss dict
(each part logged as ``train_<name>``). ``val_loss`` is the same sum on the validation batch, run
in train mode under no_grad with every BatchNorm in eval mode (running statistics neither used
from the batch nor updated), so the CLI's EarlyStopping, ModelCheckpoint and plateau LR monitor
it as for the other tasks. The proposal and RoI sampling of train mode is random, so val_loss is
a little noisy; the predictions for mAP come from a second, eval-mode pass.

Metrics: torchmetrics' ``MeanAveragePrecision`` (pycocotools backend): ``val_map`` (box AP at
IoU .5:.95), ``val_map50`` (at IoU .5), and per class ``val_map_<class>`` and
``val_map50_<class>``; instance models add the mask metrics ``val_segm_map``, ``val_segm_map50``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torchmetrics.detection import MeanAveragePrecision

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType

from ..nets.detection import (
    DEFAULT_DETECTIONS,
    DEFAULT_PROPOSALS,
    backbone_name,
    build_detector,
    is_instance_detector,
    split_architecture,
)
from .base import RsdlTask
from .metrics import make_loss_mean, metric_key

MASK_THRESHOLD = 0.5  # a predicted mask's pixels: probability above this (rsdl's decoder's rule)


@contextlib.contextmanager
def losses_mode(net: nn.Module) -> Iterator[None]:
    """torchvision's train mode (it returns losses) with BatchNorm frozen in eval mode."""
    was_training = net.training
    net.train()
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    try:
        yield
    finally:
        net.train(was_training)


def mean_average_precision(instance: bool, detections_per_img: int) -> MeanAveragePrecision:
    """torchmetrics' COCO mAP as the task and ``python -m training evaluate`` compute it: boxes (and
    masks for instance models), per class, COCO's precision array kept, and the most detections
    per image at least the net's."""
    return MeanAveragePrecision(
        iou_type=("bbox", "segm") if instance else "bbox",
        class_metrics=True,
        extended_summary=True,
        max_detection_thresholds=[1, 10, max(100, detections_per_img)],
    )


def map_values(computed: dict[str, Any], iou_type: str, instance: bool) -> tuple[float, float, dict, dict]:
    """(mAP@[.5:.95], mAP@0.5, per class mAP, per class AP50) of one IoU type ("bbox" or "segm")
    from ``MeanAveragePrecision.compute()``; per class values are keyed by the 0-based class id,
    -1 where COCO has no value (a class absent from the reference)."""
    prefix = f"{iou_type}_" if instance else ""
    classes = [int(c) for c in computed["classes"].reshape(-1).tolist()]
    maps = computed[f"{prefix}map_per_class"].reshape(-1).tolist()
    ap50 = per_class_ap50(computed[f"{prefix}precision"]).tolist()
    return (
        float(computed[f"{prefix}map"]),
        float(computed[f"{prefix}map_50"]),
        {value: float(maps[index]) for index, value in enumerate(classes) if index < len(maps)},
        {value: float(ap50[index]) for index, value in enumerate(classes) if index < len(ap50)},
    )


def per_class_ap50(precision: torch.Tensor) -> torch.Tensor:
    """AP at IoU 0.5 per class from COCOeval's precision [T, R, K, A, M] (area all, most detections),
    as COCOeval averages it: the mean over recall points that have a precision, -1 where none."""
    at_50 = precision[0, :, :, 0, -1]
    valid = at_50 > -1
    total = torch.where(valid, at_50, torch.zeros_like(at_50)).sum(dim=0)
    count = valid.sum(dim=0)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, -1.0))


class DetectionTask(RsdlTask):
    """Object detection (boxes) or instance segmentation (boxes and masks).

    Args:
        num_classes: object classes, background not counted (the CLI links it from the data module).
        in_channels: input bands (linked from the data module).
        architecture: "fasterrcnn_<backbone>" (boxes) or "maskrcnn_<backbone>" (boxes and instance
            masks), backbone "mobilenet_v3" or "efficientnet_lite0" (lite1, lite2); see
            training/nets/detection.py.
        weights: "imagenet-efficientnet-lite0" (lite1, lite2): the bundled ImageNet weights in the
            backbone of the matching *_efficientnet_lite0 detector; or an optional local state-dict
            file of a detector (e.g. another rsdl detector's checkpoint), loaded where names and
            shapes match. Never downloaded.
        freeze_backbone: train the FPN and heads with the backbone frozen first (for ImageNet
            weights); off (the default) trains all.
        unfreeze_at_epoch, unfreeze_blocks, finetune_lr_factor: at that epoch the last N backbone
            blocks start training at finetune_lr_factor x the heads' learning rate
            (training/tasks/finetuning.py).
        box_detections_per_img: objects the net returns per chip (the export's rows N).
        proposals: region proposals per chip at inference.
        score_threshold: the deployment confidence, written into the spec as ``det_conf``
            (validation mAP uses every detection the net returns, down to its 0.05 floor).
        iou_threshold: non-maximum suppression IoU, both the net's own and the spec's
            ``det_iou_thresh`` (rsdl:detect's merge across tiles).
        lr, weight_decay: AdamW; lr_patience, lr_factor: ReduceLROnPlateau on val_loss.
    """

    task_name = "detection"

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        architecture: str = "fasterrcnn_mobilenet_v3",
        weights: str | None = None,
        freeze_backbone: bool = False,
        unfreeze_at_epoch: int = 1,
        unfreeze_blocks: int = 2,
        finetune_lr_factor: float = 0.1,
        box_detections_per_img: int = DEFAULT_DETECTIONS,
        proposals: int = DEFAULT_PROPOSALS,
        score_threshold: float = 0.5,
        iou_threshold: float = 0.5,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        lr_patience: int = 3,
        lr_factor: float = 0.5,
    ) -> None:
        super().__init__(num_classes, in_channels, None, lr, weight_decay, lr_patience, lr_factor)
        for name, value in (("score_threshold", score_threshold), ("iou_threshold", iou_threshold)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie between 0 and 1, got {value}.")
        self.save_plain_hyperparameters()
        self.net = build_detector(
            architecture,
            num_classes,
            in_channels,
            box_detections_per_img=box_detections_per_img,
            proposals=proposals,
            box_nms_thresh=iou_threshold,
            weights=weights,
        )
        self.loss = nn.Identity()  # torchvision computes the losses inside the net
        self.stage_metrics = nn.ModuleDict(
            {
                stage: mean_average_precision(self.instance, box_detections_per_img)
                for stage in ("val", "test")
            }
        )
        self.stage_loss = nn.ModuleDict({stage: make_loss_mean() for stage in ("val", "test")})

    def make_stage_metrics(self, num_classes: int) -> nn.Module:
        # Replaced in __init__ by MeanAveragePrecision once the architecture is known.
        return nn.Module()

    @property
    def instance(self) -> bool:
        """Whether the net predicts instance masks."""
        return is_instance_detector(self.hparams.architecture)

    @property
    def model_type(self) -> ModelType:  # type: ignore[override]
        return ModelType.INSTANCE_SEGMENTOR if self.instance else ModelType.DETECTOR

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        object_task = getattr(datamodule, "object_task", None)
        if self.instance and object_task == "detection":
            backbone = split_architecture(self.hparams.architecture)[1]
            raise ValueError(
                f"{self.hparams.architecture} learns instance masks, but the data have boxes only "
                f"(object_task 'detection'); use fasterrcnn_{backbone} or data with masks."
            )

    # -- steps --------------------------------------------------------------------------------

    def forward(self, image: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """torchvision's detections of a [B, C, H, W] batch (eval mode), labels 1-based."""
        return self.net(list(image))

    def _targets(self, targets: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
        """The data's targets as torchvision takes them: labels 1-based, masks uint8."""
        converted = []
        for target in targets:
            item = {"boxes": target["boxes"].float(), "labels": target["class_ids"].long() + 1}
            if self.instance:
                if "masks" not in target:
                    raise ValueError(f"{self.hparams.architecture} needs instance masks in the targets.")
                item["masks"] = target["masks"].to(torch.uint8)
            converted.append(item)
        return converted

    def _losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.net(list(batch["image"]), self._targets(batch["targets"]))

    def training_step(self, batch: dict[str, Any], batch_index: int) -> torch.Tensor:
        losses = self._losses(batch)
        loss = sum(losses.values())
        size = len(batch["image"])
        for name, value in losses.items():
            self.log(f"train_{name}", value, on_step=False, on_epoch=True, batch_size=size)
        self.log(
            "train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=size
        )
        return loss

    def _evaluate(self, batch: dict[str, Any], stage: str) -> None:
        size = len(batch["image"])
        with torch.no_grad(), losses_mode(self.net):
            losses = self._losses(batch)
        loss = sum(losses.values())
        self.log(f"{stage}_loss", loss, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=size)
        self.stage_loss[stage].update(loss.detach(), weight=size)
        predictions = self.net(list(batch["image"]))
        self.stage_metrics[stage].update(
            [self._prediction_for_metrics(p) for p in predictions],
            [self._target_for_metrics(t) for t in batch["targets"]],
        )

    def _prediction_for_metrics(self, prediction: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        item = {
            "boxes": prediction["boxes"].detach(),
            "scores": prediction["scores"].detach(),
            "labels": prediction["labels"].detach() - 1,
        }
        if self.instance:
            item["masks"] = prediction["masks"][:, 0].detach() > MASK_THRESHOLD
        return item

    def _target_for_metrics(self, target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        item = {"boxes": target["boxes"].float(), "labels": target["class_ids"].long()}
        if self.instance:
            item["masks"] = target["masks"].bool()
        return item

    def validation_step(self, batch: dict[str, Any], batch_index: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_index: int) -> None:
        self._evaluate(batch, "test")

    def _log_stage_metrics(self, stage: str) -> None:
        metric = self.stage_metrics[stage]
        computed = metric.compute()
        loss = float(self.stage_loss[stage].compute())
        metric.reset()
        self.stage_loss[stage].reset()
        means, per_class = self._flatten(computed, stage)
        self.log_dict(means, prog_bar=True, sync_dist=True)
        self.log_dict(per_class, sync_dist=True)
        if not self.trainer.sanity_checking:
            self.metrics_record.update({**means, **per_class, f"{stage}_loss": loss})

    def _flatten(self, computed: dict[str, Any], stage: str) -> tuple[dict[str, float], dict[str, float]]:
        """torchmetrics' results as ``{stage}_map``, ``{stage}_map50`` (``_segm_`` for masks) and
        per class ``{stage}_map_<class>``, ``{stage}_map50_<class>``; -1 where COCO has no value."""
        names = self.class_names()
        means: dict[str, float] = {}
        per_class: dict[str, float] = {}
        for iou_type in ("bbox", "segm") if self.instance else ("bbox",):
            part = "" if iou_type == "bbox" else "segm_"
            mean, mean50, maps, ap50 = map_values(computed, iou_type, self.instance)
            means[f"{stage}_{part}map"] = mean
            means[f"{stage}_{part}map50"] = mean50
            for value, ap in maps.items():
                per_class[f"{stage}_{part}map_{metric_key(names.get(value, str(value)))}"] = ap
            for value, ap in ap50.items():
                per_class[f"{stage}_{part}map50_{metric_key(names.get(value, str(value)))}"] = ap
        return means, per_class

    # -- the model contract -------------------------------------------------------------------

    def spec_training_info(self) -> dict[str, Any]:
        backbone, backbone_library = backbone_name(self.hparams.architecture)
        return {
            "task": "instance_segmentation" if self.instance else "detection",
            "output": "detections",
            "net": {
                "architecture": self.hparams.architecture,
                "backbone": backbone,
                "library": "torchvision",  # the R-CNN, FPN and heads
                "backbone_library": backbone_library,
            },
            "box_detections_per_img": self.hparams.box_detections_per_img,
        }

    def model_spec(self) -> ModelSpec:
        spec = super().model_spec()
        return dataclasses.replace(
            spec, det_conf=self.hparams.score_threshold, det_iou_thresh=self.hparams.iou_threshold
        )
