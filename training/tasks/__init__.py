"""Lightning tasks of rsdl training: segmentation, classification and object detection."""

from __future__ import annotations

from .base import RsdlTask
from .classification import ClassificationTask
from .detection import DetectionTask
from .finetuning import UnfreezeLastBlocks
from .segmentation import SegmentationTask

# By class name: what load_task accepts from a checkpoint's "_class_path".
TASKS: dict[str, type[RsdlTask]] = {
    cls.__name__: cls for cls in (SegmentationTask, ClassificationTask, DetectionTask)
}

__all__ = [
    "TASKS",
    "ClassificationTask",
    "DetectionTask",
    "RsdlTask",
    "SegmentationTask",
    "UnfreezeLastBlocks",
]
