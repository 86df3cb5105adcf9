"""DetectionTask (training/tasks/detection.py) on synthetic chips with bright squares: a fit through
Lightning that logs losses and torchmetrics' mAP, checkpoints read with weights_only, the spec, and
a short overfit that shows the task learns."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from rsdl_qgis_plugin.core.contract.model_spec import ModelType
from training.checkpoints import load_task
from training.data.objects import collate_objects
from training.tasks import TASKS, DetectionTask

SIZE = 64


def square_chips(count: int, masks: bool = True, seed: int = 0) -> list[dict]:
    """Chips in the object data modules' item format: normalised noise with two bright squares,
    class 0 in the left half and class 1 in the right half (boxes and masks on the squares)."""
    generator = torch.Generator().manual_seed(seed)
    items = []
    for index in range(count):
        image = torch.randn(3, SIZE, SIZE, generator=generator) * 0.3
        boxes, object_masks = [], []
        for slot in range(2):
            side = int(torch.randint(12, 20, (1,), generator=generator))
            x = 4 + 30 * slot + int(torch.randint(0, 6, (1,), generator=generator))
            y = int(torch.randint(2, SIZE - side - 2, (1,), generator=generator))
            image[slot, y : y + side, x : x + side] += 2.0
            boxes.append([x, y, x + side, y + side])
            mask = torch.zeros(SIZE, SIZE, dtype=torch.uint8)
            mask[y : y + side, x : x + side] = 1
            object_masks.append(mask)
        item = {
            "image": image,
            "boxes": torch.tensor(boxes, dtype=torch.float32),
            "class_ids": torch.tensor([0, 1]),
            "chip_id": f"chip_{index}",
        }
        if masks:
            item["masks"] = torch.stack(object_masks)
        items.append(item)
    return items


def loader(items: list[dict], batch_size: int = 2) -> DataLoader:
    return DataLoader(items, batch_size=batch_size, collate_fn=collate_objects)


@pytest.mark.parametrize("architecture", ["fasterrcnn_mobilenet_v3", "maskrcnn_mobilenet_v3"])
def test_fast_dev_run_logs_losses_and_map(architecture, tmp_path):
    torch.manual_seed(0)
    task = DetectionTask(2, 3, architecture=architecture, box_detections_per_img=20)
    items = square_chips(4)
    trainer = pl.Trainer(
        fast_dev_run=True,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(task, loader(items), loader(items))
    logged = trainer.callback_metrics
    for key in (
        "train_loss",
        "train_loss_classifier",
        "train_loss_objectness",
        "val_loss",
        "val_map",
        "val_map50",
    ):
        assert key in logged and torch.isfinite(logged[key]), key
    assert ("val_segm_map50" in logged) == (architecture == "maskrcnn_mobilenet_v3")
    assert "train_loss_mask" in logged or architecture == "fasterrcnn_mobilenet_v3"
    assert 0.0 <= float(logged["val_map50"]) <= 1.0


def test_val_loss_leaves_the_net_and_batchnorm_untouched():
    torch.manual_seed(0)
    task = DetectionTask(2, 3).eval()
    batch = collate_objects(square_chips(2))
    norm = task.net.backbone.body["0"][1]
    before = norm.running_mean.clone()
    task._evaluate(batch, "val")
    assert not task.net.training and torch.equal(norm.running_mean, before)


def test_checkpoint_round_trip_and_spec(tmp_path):
    torch.manual_seed(0)
    task = DetectionTask(2, 3, architecture="maskrcnn_mobilenet_v3", score_threshold=0.4, iou_threshold=0.6)
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    items = square_chips(2)
    trainer.fit(task, loader(items), loader(items))
    path = tmp_path / "task.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["_class_path"].endswith(".DetectionTask")
    assert TASKS["DetectionTask"] is DetectionTask
    loaded = load_task(path)
    assert isinstance(loaded, DetectionTask) and loaded.hparams.architecture == "maskrcnn_mobilenet_v3"
    for name, tensor in task.net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[name], tensor), name
    spec = loaded.model_spec()
    assert spec.model_type is ModelType.INSTANCE_SEGMENTOR
    assert spec.det_conf == 0.4 and spec.det_iou_thresh == 0.6
    assert loaded.net.roi_heads.nms_thresh == 0.6  # the net's own NMS is the spec's
    assert spec.training["net"]["library"] == "torchvision"
    assert {"val_map", "val_map50", "val_segm_map", "val_loss"} <= set(spec.training["metrics"])
    assert any(key.startswith("val_map50_class_") for key in spec.training["metrics"])
    assert DetectionTask(1, 3).model_spec().model_type is ModelType.DETECTOR


def test_mask_architecture_refuses_box_only_targets():
    task = DetectionTask(2, 3, architecture="maskrcnn_mobilenet_v3")
    with pytest.raises(ValueError, match="needs instance masks"):
        task._targets(collate_objects(square_chips(1, masks=False))["targets"])


def test_a_short_overfit_learns_the_squares():
    """12 steps on 4 chips (about 30 s on 2 cores). Weaker than an mAP bound: 12 steps train the
    heads but leave BatchNorm's running statistics (momentum 0.1) far from the features' own, so
    eval-mode mAP is still near 0 here (measured: mAP50 0.85 after 30 steps with batch statistics,
    0.0 with running ones); the losses, computed as in validation, must fall well below the start."""
    torch.manual_seed(0)
    task = DetectionTask(2, 3, lr=1e-3)
    batch = collate_objects(square_chips(4))
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-3, weight_decay=1e-4)
    task.net.train()
    losses = []
    for _ in range(12):
        loss = sum(task._losses(batch).values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(task.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.4 * losses[0], losses
