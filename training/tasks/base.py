"""What both tasks share: the net, loss, metrics, optimiser and scheduler, and the model spec.

Hyperparameters are plain JSON types (so checkpoints load with ``weights_only=True``) and name
the task class (``_class_path``), which ``training.checkpoints.load_task`` uses to rebuild it.
The data's half of the spec (classes, bands, normalisation, tile size, provenance) comes from
the data module at setup and travels in the checkpoint under ``rsdl_spec``; metrics under
``rsdl_metrics``. A task built with ``weights`` (ImageNet name or file) records where they came
from (``training.nets.pretrained.weights_provenance``, taken when fitting starts) in the spec's
``training.pretrained`` and in the checkpoint under ``rsdl_pretrained``: a task rebuilt from a
checkpoint has ``weights=None``.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from torch import nn

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType

from ..data.base import CLASS_PATH_KEY
from ..data.classes import IGNORE_INDEX
from ..nets.pretrained import weights_provenance
from .finetuning import UnfreezeLastBlocks
from .losses import set_class_weights
from .metrics import flatten, make_loss_mean, make_metrics

MONITOR = "val_loss"
MIN_LR = 1e-7
SPEC_KEY = "rsdl_spec"
METRICS_KEY = "rsdl_metrics"
PRETRAINED_KEY = "rsdl_pretrained"
STAGES = ("train", "val", "test")


class RsdlTask(pl.LightningModule):
    """Base task. Subclasses build ``self.net`` and ``self.loss`` and define the targets."""

    task_name: ClassVar[str] = ""
    target_key: ClassVar[str] = ""
    model_type: ClassVar[ModelType] = ModelType.SEGMENTOR

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        class_weights: str | list[float] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        lr_patience: int = 3,
        lr_factor: float = 0.5,
    ) -> None:
        super().__init__()
        if class_weights is not None and class_weights != "auto" and len(class_weights) != num_classes:
            raise ValueError(f"class_weights has {len(class_weights)} values for {num_classes} classes.")
        self.net: nn.Module
        self.loss: nn.Module
        self.data_spec: ModelSpec | None = None
        self.metrics_record: dict[str, float] = {}
        self._pretrained: dict[str, Any] | None = None
        self._pretrained_known = False
        self.stage_metrics = nn.ModuleDict(
            {stage: self.make_stage_metrics(num_classes) for stage in ("val", "test")}
        )
        self.stage_loss = nn.ModuleDict({stage: make_loss_mean() for stage in ("val", "test")})

    def make_stage_metrics(self, num_classes: int) -> nn.Module:
        """One stage's metrics: per-class and mean scores of the predicted classes."""
        return make_metrics(self.task_name, num_classes, IGNORE_INDEX)

    def save_plain_hyperparameters(self) -> None:
        """``save_hyperparameters`` of the calling ``__init__``, plus the class it belongs to.

        ``_class_path`` (what LightningCLI records too) is how ``load_task`` chooses the class:
        by its name among rsdl's tasks, never by importing the path. A separate "task" key would
        break ``--ckpt_path``, where Lightning passes every saved hyperparameter to ``__init__``.
        """
        self.save_hyperparameters(frame=inspect.currentframe().f_back)
        self.hparams.setdefault(CLASS_PATH_KEY, f"{type(self).__module__}.{type(self).__qualname__}")

    # -- data hand-over -----------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        self.pretrained_provenance()  # the weights file as it is when training starts
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "model_spec"):
            self.data_spec = datamodule.model_spec()
        weights = self.hparams.get("class_weights")
        if weights == "auto":
            if datamodule is None or not hasattr(datamodule, "class_weights"):
                raise ValueError(
                    "class_weights: auto needs an rsdl data module (it reads the class statistics)."
                )
            weights = datamodule.class_weights()
        if weights is not None:
            set_class_weights(self.loss, torch.tensor(weights, dtype=torch.float32))

    # -- steps --------------------------------------------------------------------------------

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)

    def predict_classes(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=1)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits = self.net(batch["image"])
        target = batch[self.target_key]
        loss = self.loss(logits, target)
        size = len(target)
        self.log(
            f"{stage}_loss",
            loss,
            on_step=stage == "train",
            on_epoch=True,
            prog_bar=True,
            sync_dist=True,  # one scalar all-reduce: negligible beside DDP's gradient all-reduce
            batch_size=size,
        )
        if stage in self.stage_metrics:
            self.stage_metrics[stage].update(self.predict_classes(logits.detach()), target)
            self.stage_loss[stage].update(loss.detach(), weight=size)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> None:
        self._step(batch, "test")

    def _log_stage_metrics(self, stage: str) -> None:
        collection = self.stage_metrics[stage]
        means, per_class = flatten(collection.compute(), self.class_names(), stage)
        loss = float(self.stage_loss[stage].compute())
        collection.reset()
        self.stage_loss[stage].reset()
        # torchmetrics has synced these already; sync_dist averages equal values (and keeps
        # Lightning from warning about unsynced epoch metrics).
        self.log_dict(means, prog_bar=True, sync_dist=True)
        self.log_dict(per_class, sync_dist=True)
        if not self.trainer.sanity_checking:
            self.metrics_record.update({**means, **per_class, f"{stage}_loss": loss})

    def on_validation_epoch_end(self) -> None:
        self._log_stage_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_stage_metrics("test")

    # -- optimisation -------------------------------------------------------------------------

    def configure_callbacks(self) -> list[pl.Callback]:
        """Transfer learning in two phases for tasks that offer ``freeze_backbone`` (classifiers,
        detectors): see ``UnfreezeLastBlocks``."""
        if not self.hparams.get("freeze_backbone"):
            return []
        return [
            UnfreezeLastBlocks(
                self.hparams.unfreeze_at_epoch, self.hparams.unfreeze_blocks, self.hparams.finetune_lr_factor
            )
        ]

    def configure_optimizers(self) -> dict[str, Any]:
        # Frozen parameters stay out; the fine-tuning callback adds them as a group later.
        parameters = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=self.hparams.lr_factor,
            patience=self.hparams.lr_patience,
            min_lr=MIN_LR,
        )
        # Stepped when the monitored loss exists: with --trainer.check_val_every_n_epoch N it is
        # logged every N epochs only, and Lightning refuses a plateau scheduler stepped in between.
        every = getattr(self._trainer, "check_val_every_n_epoch", None) if self._trainer is not None else None
        schedule = {"scheduler": scheduler, "monitor": MONITOR, "frequency": every or 1}
        return {"optimizer": optimizer, "lr_scheduler": schedule}

    # -- the model contract -------------------------------------------------------------------

    def class_names(self) -> dict[int, str]:
        if self.data_spec is not None and self.data_spec.class_names:
            return dict(self.data_spec.class_names)
        return {i: f"class_{i}" for i in range(self.hparams.num_classes)}

    def spec_training_info(self) -> dict[str, Any]:
        """Task facts for the spec's ``training`` entry (subclasses add theirs)."""
        return {"task": self.task_name, "output": "logits", "output_activation": "softmax"}

    def pretrained_provenance(self) -> dict[str, Any] | None:
        """Where the ``weights`` the net started from came from (None: from scratch); see the module
        docstring. Taken once; a checkpoint's record replaces it."""
        if not self._pretrained_known:
            weights = self.hparams.get("weights")
            self._pretrained = weights_provenance(weights) if weights else None
            self._pretrained_known = True
        return self._pretrained

    def model_spec(self) -> ModelSpec:
        """The full spec of this model: the data's part plus model type, net and metrics."""
        base = self.data_spec or ModelSpec()
        training = {**base.training, **self.spec_training_info()}
        training["hyperparameters"] = {k: v for k, v in self.hparams.items() if not str(k).startswith("_")}
        if self.metrics_record:
            training["metrics"] = dict(sorted(self.metrics_record.items()))
        if (pretrained := self.pretrained_provenance()) is not None:
            training["pretrained"] = pretrained
        return dataclasses.replace(base, model_type=self.model_type, training=training)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.data_spec is not None:
            checkpoint[SPEC_KEY] = self.data_spec.to_metadata()
        checkpoint[METRICS_KEY] = dict(self.metrics_record)
        if (pretrained := self.pretrained_provenance()) is not None:
            checkpoint[PRETRAINED_KEY] = pretrained

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if SPEC_KEY in checkpoint:
            self.data_spec = ModelSpec.from_metadata(checkpoint[SPEC_KEY])
        self.metrics_record = dict(checkpoint.get(METRICS_KEY, {}))
        if PRETRAINED_KEY in checkpoint:
            self._pretrained, self._pretrained_known = checkpoint[PRETRAINED_KEY], True
