"""Data modules for rsdl training: chip folders, raster + vector labels, image folders."""

from __future__ import annotations

from .base import RsdlDataModule
from .chip_folder import ChipsDataModule
from .classes import IGNORE_INDEX, ClassTable
from .image_folder import ImageFolderDataModule
from .raster_vector import RasterVectorDataModule
from .transforms import Augment

__all__ = [
    "IGNORE_INDEX",
    "Augment",
    "ChipsDataModule",
    "ClassTable",
    "ImageFolderDataModule",
    "RasterVectorDataModule",
    "RsdlDataModule",
]
