"""SegmentationTask (training/tasks/segmentation.py): multi-class and binary U-Nets."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from training.data import RasterVectorDataModule
from training.tasks import SegmentationTask


def test_binary_segmentation_predicts_one_sigmoid_channel(vector_scene, make_trainer, tmp_path):
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
    make_trainer(tmp_path, enable_checkpointing=False).fit(task, datamodule=data)
    assert task.net.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    spec = task.model_spec()
    assert spec.training["output_activation"] == "sigmoid" and spec.class_names == {
        0: "background",
        1: "labels",
    }
    with pytest.raises(ValueError, match="2 classes"):
        SegmentationTask(3, 3, mode="binary")


def test_binary_classes_follow_the_spec_threshold():
    task = SegmentationTask(2, 3, mode="binary")
    logits = torch.logit(torch.tensor([0.2, 0.5, 0.65, 0.9])).reshape(1, 1, 1, 4)
    assert task.predict_classes(logits).tolist() == [[[0, 1, 1, 1]]]  # default threshold 0.5
    task.data_spec = dataclasses.replace(ModelSpec(), seg_thresh=0.7)
    assert task.predict_classes(logits).tolist() == [[[0, 0, 0, 1]]]


def test_multiclass_spec_names_the_unet_and_its_encoder():
    task = SegmentationTask(3, 4, encoder="mobilenet_v2", loss="ce+dice").eval()
    with torch.no_grad():
        assert task(torch.zeros(1, 4, 32, 32)).shape == (1, 3, 32, 32)
    spec = task.model_spec()
    assert spec.model_type == ModelType.SEGMENTOR
    assert spec.training["net"] == {
        "architecture": "Unet",
        "encoder": "mobilenet_v2",
        "library": "segmentation-models-pytorch",
    }
    assert spec.training["mode"] == "multiclass" and spec.training["output_activation"] == "softmax"
    assert spec.training["hyperparameters"]["loss"] == "ce+dice"
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]]).T.reshape(1, 3, 1, 2)
    assert task.predict_classes(logits).tolist() == [[[1, 0]]]
