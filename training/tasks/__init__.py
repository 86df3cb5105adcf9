"""Lightning tasks of rsdl training: segmentation and classification."""

from __future__ import annotations

from .base import RsdlTask
from .classification import ClassificationTask
from .finetuning import UnfreezeLastBlocks
from .segmentation import SegmentationTask

# By class name: what load_task accepts from a checkpoint's "_class_path".
TASKS: dict[str, type[RsdlTask]] = {cls.__name__: cls for cls in (SegmentationTask, ClassificationTask)}

__all__ = ["TASKS", "ClassificationTask", "RsdlTask", "SegmentationTask", "UnfreezeLastBlocks"]
