"""Transfer learning in two phases (training/tasks/finetuning.py): the head first, then the last
backbone blocks in a parameter group of their own."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from training.data import ImageFolderDataModule
from training.tasks import ClassificationTask, UnfreezeLastBlocks


class PhaseRecorder(pl.Callback):
    """Which parameters train, and the optimiser's groups, in each epoch's first batch."""

    def __init__(self) -> None:
        self.trainable: list[set[str]] = []
        self.group_lrs: list[list[float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        names = {name.split(".")[0] for name, p in pl_module.net.named_parameters() if p.requires_grad}
        self.trainable.append(names)
        self.group_lrs.append([group["lr"] for group in trainer.optimizers[0].param_groups])


def test_transfer_learning_trains_the_head_then_the_last_blocks(photo_folder, make_trainer, tmp_path):
    data = ImageFolderDataModule(str(photo_folder), image_size=32, batch_size=4, cache_dir=str(tmp_path))
    task = ClassificationTask(
        data.num_classes,
        data.in_channels,
        backbone="resnet18",
        unfreeze_at_epoch=1,
        unfreeze_blocks=2,
        finetune_lr_factor=0.1,
        lr=0.01,
    )
    recorder = PhaseRecorder()
    trainer = make_trainer(tmp_path, epochs=2, callbacks=[recorder], enable_checkpointing=False)
    trainer.fit(task, datamodule=data)
    assert recorder.trainable[0] == {"fc"}  # the new head only
    assert recorder.trainable[1] == {"layer3", "layer4", "fc"}
    assert recorder.group_lrs[0] == [0.01]
    assert recorder.group_lrs[1] == pytest.approx([0.01, 0.001])


def test_frozen_parameters_are_unchanged_after_a_step(photo_folder, make_trainer, tmp_path):
    data = ImageFolderDataModule(str(photo_folder), image_size=32, batch_size=4, cache_dir=str(tmp_path))
    task = ClassificationTask(
        data.num_classes, data.in_channels, backbone="resnet18", unfreeze_at_epoch=5, lr=0.1
    )
    before = {name: p.detach().clone() for name, p in task.net.named_parameters()}
    make_trainer(tmp_path, epochs=1, enable_checkpointing=False).fit(task, datamodule=data)
    assert task.global_step == 1
    # AdamW with weight decay moves every parameter it is given: only the head may have moved.
    changed = {name for name, p in task.net.named_parameters() if not torch.equal(p.detach(), before[name])}
    assert changed == {"fc.weight", "fc.bias"}


@pytest.mark.parametrize(
    "arguments", [{"unfreeze_at_epoch": -1}, {"unfreeze_blocks": -2}, {"lr_factor": 0.0}, {"lr_factor": 1.5}]
)
def test_impossible_phases_are_refused(arguments):
    with pytest.raises(ValueError, match="0 < lr_factor <= 1"):
        UnfreezeLastBlocks(**arguments)
