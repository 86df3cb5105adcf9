"""ClassificationTask (training/tasks/classification.py): torchvision backbones, transfer learning on
by default, the classifier's part of the spec."""

from __future__ import annotations

import pytest
import torch

from rsdl_qgis_plugin.core.contract.model_spec import ModelType
from training.tasks import ClassificationTask, UnfreezeLastBlocks


def test_the_classifier_predicts_one_logit_per_class_and_describes_itself():
    task = ClassificationTask(4, 5, backbone="mobilenet_v3_small").eval()
    with torch.no_grad():
        assert task(torch.zeros(2, 5, 32, 32)).shape == (2, 4)
    spec = task.model_spec()
    assert spec.model_type == ModelType.CLASSIFIER
    assert spec.training["task"] == "classification"
    assert spec.training["net"] == {"architecture": "mobilenet_v3_small", "library": "torchvision"}
    assert spec.training["hyperparameters"]["num_classes"] == 4


def test_transfer_learning_is_a_callback_that_can_be_switched_off():
    callbacks = ClassificationTask(2, 3, unfreeze_at_epoch=2, unfreeze_blocks=1).configure_callbacks()
    assert len(callbacks) == 1 and isinstance(callbacks[0], UnfreezeLastBlocks)
    assert (callbacks[0].unfreeze_at_epoch, callbacks[0].unfreeze_blocks) == (2, 1)
    assert ClassificationTask(2, 3, freeze_backbone=False).configure_callbacks() == []


def test_the_dice_loss_is_refused_for_classification():
    with pytest.raises(ValueError, match="dice loss is for segmentation"):
        ClassificationTask(2, 3, loss="ce+dice")
