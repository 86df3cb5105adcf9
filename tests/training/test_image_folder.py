"""ImageFolderDataModule (training/data/image_folder.py): photos in class folders, split at random
per class or by the given train/val folders."""

from __future__ import annotations

import torch

from training.data import ImageFolderDataModule


def test_image_folder_random_split_is_per_class_and_reproducible(photo_folder, tmp_path):
    first = ImageFolderDataModule(
        str(photo_folder), image_size=24, val_fraction=0.34, cache_dir=str(tmp_path)
    )
    second = ImageFolderDataModule(
        str(photo_folder), image_size=24, val_fraction=0.34, cache_dir=str(tmp_path)
    )
    assert first.items == second.items
    assert first.class_table.names == ("cat", "dog")
    assert [label for _, label in first.items["val"]] == [0, 0, 1, 1]
    assert not {p for p, _ in first.items["val"]} & {p for p, _ in first.items["train"]}
    first.setup("fit")
    batch = next(iter(first.train_dataloader()))
    assert batch["image"].shape[1:] == (3, 24, 24) and batch["label"].dtype == torch.int64
    assert first.model_spec().tile_size == 24 and first.model_spec().class_names == {0: "cat", 1: "dog"}


def test_image_folder_given_split(photo_folder, tmp_path):
    root = tmp_path / "given"
    for split, files in (("train", slice(0, 4)), ("val", slice(4, 6))):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            for path in sorted((photo_folder / name).iterdir())[files]:
                (root / split / name / path.name).write_bytes(path.read_bytes())
    module = ImageFolderDataModule(str(root), image_size=16, cache_dir=str(tmp_path))
    assert module.given_split
    assert {split: len(items) for split, items in module.items.items()} == {"train": 8, "val": 4, "test": 0}
