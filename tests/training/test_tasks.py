"""Tasks: transfer-learning phases, checkpoints that load with weights_only, the model spec."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from training import cli
from training.checkpoints import load_datamodule, load_task
from training.data import ChipsDataModule, ImageFolderDataModule, RasterVectorDataModule
from training.tasks import ClassificationTask, SegmentationTask


def _trainer(tmp_path, epochs: int = 1, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        limit_train_batches=1,
        limit_val_batches=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


class PhaseRecorder(pl.Callback):
    """Which parameters train, and the optimiser's groups, in each epoch's first batch."""

    def __init__(self) -> None:
        self.trainable: list[set[str]] = []
        self.group_lrs: list[list[float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        names = {name.split(".")[0] for name, p in pl_module.net.named_parameters() if p.requires_grad}
        self.trainable.append(names)
        self.group_lrs.append([group["lr"] for group in trainer.optimizers[0].param_groups])


def test_transfer_learning_trains_the_head_then_the_last_blocks(photo_folder, tmp_path):
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
    _trainer(tmp_path, epochs=2, callbacks=[recorder], enable_checkpointing=False).fit(task, datamodule=data)
    assert recorder.trainable[0] == {"fc"}  # the new head only
    assert recorder.trainable[1] == {"layer3", "layer4", "fc"}
    assert recorder.group_lrs[0] == [0.01]
    assert recorder.group_lrs[1] == pytest.approx([0.01, 0.001])


@pytest.fixture(scope="module")
def trained(chips_folder, tmp_path_factory):
    """A segmentation task fitted for one step on the chip folder, with its best checkpoint."""
    folder = tmp_path_factory.mktemp("fit")
    data = ChipsDataModule(str(chips_folder), batch_size=4, cache_dir=str(folder / "cache"))
    task = SegmentationTask(data.num_classes, data.in_channels, loss="ce+dice", class_weights="auto")
    checkpoint = ModelCheckpoint(dirpath=folder / "checkpoints", monitor="val_loss", mode="min")
    _trainer(folder, callbacks=[checkpoint]).fit(task, datamodule=data)
    return task, data, checkpoint.best_model_path


def test_checkpoint_loads_with_weights_only_and_json_hyperparameters(trained):
    _, _, path = trained
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    json.dumps(checkpoint["hyper_parameters"])
    json.dumps(checkpoint["datamodule_hyper_parameters"])
    assert checkpoint["hyper_parameters"]["_class_path"].endswith(".SegmentationTask")


def test_load_task_round_trip(trained):
    task, data, path = trained
    loaded = load_task(path)
    assert isinstance(loaded, SegmentationTask) and not loaded.training
    batch = next(iter(data.val_dataloader()))
    task.eval()
    with torch.no_grad():
        assert torch.allclose(loaded.net(batch["image"]), task.net(batch["image"]), atol=1e-6)
    assert loaded.model_spec() == task.model_spec()


def test_model_spec_describes_model_and_data(trained):
    task, data, _ = trained
    spec = task.model_spec()
    assert spec.model_type == ModelType.SEGMENTOR
    assert spec.class_names == {0: "background", 1: "building", 2: "water"}
    assert spec.class_colors[1] == "#e31a1c"
    assert spec.bands == (1, 2, 3) and spec.tile_size == 32 and spec.ignore_index == 255
    assert spec.resolution_cm == 100.0 and spec.max_pixel_value == 255
    assert spec.standardization_mean == data.model_spec().standardization_mean
    training = spec.training
    assert training["task"] == "segmentation" and training["output_activation"] == "softmax"
    assert training["class_values"] == [0, 1, 2]
    assert {"val_loss", "val_iou", "val_iou_building", "val_f1_water"} <= set(training["metrics"])
    assert training["data"]["source"] == "rsdl chips" and "split" in training
    assert ModelSpec.from_metadata(spec.to_metadata()) == spec  # what export writes, the plugin reads


def test_auto_class_weights_come_from_the_data_statistics(trained):
    task, data, _ = trained
    assert task.loss.losses[0].class_weight.tolist() == pytest.approx(data.class_weights())


def test_load_datamodule_uses_the_checkpoint_normalisation(trained, tmp_path):
    _, data, path = trained
    rebuilt = load_datamodule(path, cache_dir=str(tmp_path))
    assert isinstance(rebuilt, ChipsDataModule)
    rebuilt.setup("validate")
    assert rebuilt.model_spec().standardization_std == data.model_spec().standardization_std
    assert len(rebuilt.datasets["val"]) == len(data.datasets["val"])


def test_binary_segmentation_predicts_one_sigmoid_channel(vector_scene, tmp_path):
    data = RasterVectorDataModule(
        str(vector_scene["raster"]),
        str(vector_scene["labels"]),
        burn_value=1,
        chip_size=32,
        block_size=64,
        batch_size=4,
        cache_dir=str(tmp_path),
    )
    task = SegmentationTask(data.num_classes, data.in_channels, mode="binary", loss="focal+dice")
    _trainer(tmp_path, enable_checkpointing=False).fit(task, datamodule=data)
    assert task.net.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    spec = task.model_spec()
    assert spec.training["output_activation"] == "sigmoid" and spec.class_names == {
        0: "background",
        1: "labels",
    }
    with pytest.raises(ValueError, match="2 classes"):
        SegmentationTask(3, 3, mode="binary")


def test_cli_validate_restores_a_checkpoint(trained, chips_folder, tmp_path, monkeypatch, capsys):
    """``--ckpt_path`` hands the saved hyperparameters back to the task's ``__init__``."""
    _, _, path = trained
    monkeypatch.chdir(tmp_path)
    config = Path(__file__).resolve().parents[2] / "training" / "configs" / "chips_segmentation.yaml"
    arguments = [
        "validate",
        "--config",
        str(config),
        f"--data.init_args.root={chips_folder}",
        "--data.init_args.num_workers=0",
        f"--data.init_args.cache_dir={tmp_path}",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        f"--ckpt_path={path}",
    ]
    assert cli.main(arguments) == 0
    assert "val_iou_building" in capsys.readouterr().out
