"""What both tasks share (training/tasks/base.py): checkpoints with JSON hyperparameters, the model spec
from model and data, class weights from the data, the optimiser over trainable parameters."""

from __future__ import annotations

import json

import pytest
import torch

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from training.nets import freeze_backbone
from training.tasks import ClassificationTask, SegmentationTask


def test_checkpoint_loads_with_weights_only_and_json_hyperparameters(trained):
    _, _, path = trained
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    json.dumps(checkpoint["hyper_parameters"])
    json.dumps(checkpoint["datamodule_hyper_parameters"])
    assert checkpoint["hyper_parameters"]["_class_path"].endswith(".SegmentationTask")


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


def test_class_weights_must_give_one_value_per_class():
    with pytest.raises(ValueError, match="class_weights has 2 values for 3 classes"):
        SegmentationTask(3, 3, class_weights=[1.0, 2.0])


def test_the_optimiser_takes_only_trainable_parameters():
    task = ClassificationTask(2, 3, backbone="resnet18", lr=0.02, weight_decay=0.0)
    freeze_backbone(task.net)
    optimisers = task.configure_optimizers()
    optimizer = optimisers["optimizer"]
    assert [id(p) for group in optimizer.param_groups for p in group["params"]] == [
        id(p) for p in task.net.fc.parameters()
    ]
    assert optimizer.param_groups[0]["lr"] == 0.02
    assert optimisers["lr_scheduler"]["monitor"] == "val_loss"


def test_without_data_the_classes_are_numbered():
    task = SegmentationTask(2, 3)
    assert task.class_names() == {0: "class_0", 1: "class_1"}
    spec = task.model_spec()
    assert spec.model_type == ModelType.SEGMENTOR and "metrics" not in spec.training


def test_a_fit_validating_every_few_epochs_steps_the_plateau_schedule_with_it(chips_folder, tmp_path):
    """--trainer.check_val_every_n_epoch 2: the learning-rate plateau waits for the validation loss
    (Lightning raised 'ReduceLROnPlateau conditioned on metric val_loss which is not available')."""
    from tests.training.conftest import quick_trainer
    from training.data import ChipsDataModule

    data = ChipsDataModule(str(chips_folder), batch_size=4, cache_dir=str(tmp_path / "cache"))
    task = SegmentationTask(data.num_classes, data.in_channels, encoder="resnet18")
    trainer = quick_trainer(tmp_path, epochs=3, check_val_every_n_epoch=2)
    trainer.fit(task, datamodule=data)
    assert trainer.current_epoch == 3 and trainer.lr_scheduler_configs[0].frequency == 2
