"""Data modules for rsdl training: chip folders, raster + vector labels, image folders, objects."""

from __future__ import annotations

from .base import RsdlDataModule
from .chip_folder import ChipsDataModule
from .classes import IGNORE_INDEX, ClassTable
from .image_folder import ImageFolderDataModule
from .objects import ObjectChipsDataModule, ObjectDataModule, ObjectDataset, collate_objects
from .objects_augment import ObjectAugment
from .raster_objects import RasterObjectsDataModule
from .raster_vector import RasterVectorDataModule
from .transforms import Augment

__all__ = [
    "IGNORE_INDEX",
    "Augment",
    "ChipsDataModule",
    "ClassTable",
    "ImageFolderDataModule",
    "ObjectAugment",
    "ObjectChipsDataModule",
    "ObjectDataModule",
    "ObjectDataset",
    "RasterObjectsDataModule",
    "RasterVectorDataModule",
    "RsdlDataModule",
    "collate_objects",
]
