"""Transfer learning in two phases, as a Lightning fine-tuning callback.

Phase 1 (epochs before ``unfreeze_at_epoch``): the backbone is frozen and only the new head
trains at the task's learning rate. Phase 2: the last ``unfreeze_blocks`` backbone blocks
(``nets.freezing.backbone_blocks``) become trainable and join the optimiser as a new parameter
group at ``lr_factor`` x the head's current learning rate. Built on Lightning's BaseFinetuning
(which also restores the phase when training resumes from a checkpoint) rather than
BackboneFinetuning, which can only unfreeze a whole ``backbone`` attribute.
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BaseFinetuning
from torch.optim import Optimizer

from ..nets.freezing import backbone_blocks, freeze_backbone


class UnfreezeLastBlocks(BaseFinetuning):
    def __init__(self, unfreeze_at_epoch: int = 1, unfreeze_blocks: int = 2, lr_factor: float = 0.1) -> None:
        super().__init__()
        if unfreeze_at_epoch < 0 or unfreeze_blocks < 0 or not 0 < lr_factor <= 1:
            raise ValueError("unfreeze_at_epoch and unfreeze_blocks must be >= 0 and 0 < lr_factor <= 1.")
        self.unfreeze_at_epoch, self.unfreeze_blocks, self.lr_factor = (
            unfreeze_at_epoch,
            unfreeze_blocks,
            lr_factor,
        )

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        freeze_backbone(pl_module.net)

    def finetune_function(self, pl_module: pl.LightningModule, epoch: int, optimizer: Optimizer) -> None:
        if epoch != self.unfreeze_at_epoch or self.unfreeze_blocks == 0:
            return
        blocks = backbone_blocks(pl_module.net)[-self.unfreeze_blocks :]
        self.unfreeze_and_add_param_group(
            blocks, optimizer, initial_denom_lr=1.0 / self.lr_factor, train_bn=True
        )
