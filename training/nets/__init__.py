"""Nets for rsdl training: plain nn.Modules (no Lightning), mapping normalised images to logits."""

from __future__ import annotations

from .classification import BACKBONES, build_classifier
from .detection import DETECTORS, RsdlLayout, build_detector
from .freezing import backbone_blocks, freeze_backbone, head_of, unfreeze_last_blocks
from .segmentation import SUGGESTED_ENCODERS, build_unet
from .weights import load_matching, read_weights

__all__ = [
    "BACKBONES",
    "DETECTORS",
    "SUGGESTED_ENCODERS",
    "RsdlLayout",
    "backbone_blocks",
    "build_classifier",
    "build_detector",
    "build_unet",
    "freeze_backbone",
    "head_of",
    "load_matching",
    "read_weights",
    "unfreeze_last_blocks",
]
