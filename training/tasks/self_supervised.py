"""SelfSupervisedTask: BYOL or SimCLR pretraining of an EfficientNet-Lite encoder, with lightly's parts.

The backbone is timm's headless ``tf_efficientnet_lite0`` (lite1, lite2) built by
``training.nets.imagenet.create_lite(..., num_classes=0)`` for the rasters' band count: stem,
blocks, head convolution and pooling (1280 features for lite0), from scratch or from the bundled
ImageNet weights (``init``). The heads and losses are lightly's, none is written here:

* ``byol`` (default): the online backbone, ``BYOLProjectionHead`` and ``BYOLPredictionHead``, and a
  momentum copy of backbone and projection head (``deactivate_requires_grad``, ``update_momentum``
  with ``cosine_schedule`` from 0.99 to 1 over the run); ``NegativeCosineSimilarity``, symmetrised.
  It uses no negative pairs, so small batches (a CPU's) still learn.
* ``simclr``: backbone and ``SimCLRProjectionHead``; ``NTXentLoss`` (temperature 0.5, negatives
  gathered from every GPU under DDP). The other tiles of the batch are its negatives: give it
  large batches.

AdamW with a cosine decay of the learning rate over the run's steps. Only the online backbone is
kept (:meth:`SelfSupervisedTask.backbone_state_dict`): heads and momentum copies are scaffolding.
"""

from __future__ import annotations

import copy
import os

# lightly 1.6 makes no network request on import (its API client and version check are gone;
# tests/training/test_pretrain.py runs with sockets blocked). Versions before 1.6 asked PyPI for a
# newer release on import unless this was set: set it, so a different install stays offline too.
os.environ.setdefault("LIGHTLY_DID_VERSION_CHECK", "True")

import lightly
import lightning.pytorch as pl
import torch
from lightly.loss import NegativeCosineSimilarity, NTXentLoss
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead, SimCLRProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule

from ..nets.imagenet import IMAGENET_WEIGHTS, create_lite, imagenet_weights, load_imagenet_weights

METHODS = ("byol", "simclr")
NO_INIT = "none"
INITS = (NO_INIT, *IMAGENET_WEIGHTS)
HIDDEN_DIM = 1024  # lightly's defaults (4096) are sized for ResNet-50 on ImageNet
BYOL_DIM = 256
SIMCLR_DIM = 128
BYOL_MOMENTUM = (0.99, 1.0)
NTXENT_TEMPERATURE = 0.5
FINAL_LR_FRACTION = 0.01
LIGHTLY_VERSION = lightly.__version__


class SelfSupervisedTask(pl.LightningModule):
    """Self-supervised pretraining of an encoder (see the module docstring).

    Args:
        in_channels: the rasters' band count.
        backbone: tf_efficientnet_lite0, lite1 or lite2 (timm, TensorFlow padding).
        method: "byol" or "simclr".
        init: "none" (from scratch) or bundled ImageNet weights for that backbone
            (imagenet-efficientnet-lite0, ...), the stem adapted to the band count.
        lr, weight_decay: AdamW; the learning rate decays to 1 % of ``lr`` along a cosine.
    """

    def __init__(
        self,
        in_channels: int,
        backbone: str = "tf_efficientnet_lite0",
        method: str = "byol",
        init: str = NO_INIT,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"Unknown method {method!r}; choose one of {METHODS}.")
        if init != NO_INIT and imagenet_weights(init).architecture != backbone:
            raise ValueError(
                f"init {init!r} fits backbone {imagenet_weights(init).architecture!r}, not {backbone!r}."
            )
        self.save_hyperparameters()
        self.backbone = create_lite(backbone, num_classes=0, in_chans=in_channels)
        if init != NO_INIT:
            load_imagenet_weights(self.backbone, init, backbone)
        features = self.backbone.num_features
        if method == "byol":
            self.projection_head = BYOLProjectionHead(features, HIDDEN_DIM, BYOL_DIM)
            self.prediction_head = BYOLPredictionHead(BYOL_DIM, HIDDEN_DIM, BYOL_DIM)
            self.backbone_momentum = copy.deepcopy(self.backbone)
            self.projection_head_momentum = copy.deepcopy(self.projection_head)
            deactivate_requires_grad(self.backbone_momentum)
            deactivate_requires_grad(self.projection_head_momentum)
            self.criterion = NegativeCosineSimilarity()
        else:
            self.projection_head = SimCLRProjectionHead(features, HIDDEN_DIM, SIMCLR_DIM)
            self.criterion = NTXentLoss(
                temperature=NTXENT_TEMPERATURE, gather_distributed=torch.distributed.is_available()
            )
        self.epoch_losses: list[float] = []
        self.tiles_seen = 0
        self._loss_sum: torch.Tensor | None = None
        self._loss_batches = 0

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled features (N, num_features)."""
        return self.backbone(image)

    def _total_steps(self) -> int:
        return max(int(self.trainer.estimated_stepping_batches), 1)

    def _byol_loss(self, view_a: torch.Tensor, view_b: torch.Tensor) -> torch.Tensor:
        total = self._total_steps()
        momentum = cosine_schedule(min(self.global_step, total), total, *BYOL_MOMENTUM)
        update_momentum(self.backbone, self.backbone_momentum, m=momentum)
        update_momentum(self.projection_head, self.projection_head_momentum, m=momentum)
        online = [self.prediction_head(self.projection_head(self.backbone(v))) for v in (view_a, view_b)]
        with torch.no_grad():
            target = [self.projection_head_momentum(self.backbone_momentum(v)) for v in (view_a, view_b)]
        return 0.5 * (self.criterion(online[0], target[1]) + self.criterion(online[1], target[0]))

    def _simclr_loss(self, view_a: torch.Tensor, view_b: torch.Tensor) -> torch.Tensor:
        z_a, z_b = (self.projection_head(self.backbone(view)) for view in (view_a, view_b))
        return self.criterion(z_a, z_b)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> torch.Tensor:
        view_a, view_b = batch
        method = self._byol_loss if self.hparams.method == "byol" else self._simclr_loss
        loss = method(view_a, view_b)
        self.log("loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=len(view_a))
        detached = loss.detach()
        self._loss_sum = detached if self._loss_sum is None else self._loss_sum + detached
        self._loss_batches += 1
        self.tiles_seen += len(view_a) * self.trainer.world_size
        return loss

    def on_train_epoch_start(self) -> None:
        self._loss_sum, self._loss_batches = None, 0

    def on_train_epoch_end(self) -> None:
        if self._loss_batches:
            self.epoch_losses.append(float(self._loss_sum) / self._loss_batches)

    def configure_optimizers(self) -> dict:
        parameters = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=self._total_steps(), eta_min=self.hparams.lr * FINAL_LR_FRACTION
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """The online backbone's tensors under timm's names, on the CPU (what a pretrain file keeps)."""
        state = self.backbone.state_dict()
        return {key: tensor.detach().to("cpu", copy=True).contiguous() for key, tensor in state.items()}
