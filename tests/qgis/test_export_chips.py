"""rsdl:exportchips in QGIS (pytest-qgis): chips against GDAL reads of the sources, the index,
the split, dataset.json, skip rules, vector labels, errors and cancel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from osgeo import gdal, ogr, osr
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from rsdl_qgis_plugin.core.datasets.chip_folder import load_dataset_document
from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries

ALG = "rsdl:exportchips"
SOLARIS = "solaris_atlanta/sample_geotiff.tif"
SOLARIS_LABELS = "solaris_atlanta/geotiff_labels.geojson"
# Overlapping chips (stride < size) and blocks that are not a multiple of the stride: some chips
# straddle blocks, and train and validation chips touch along block edges.
CHIPS = {
    "CHIP_SIZE": 64,
    "STRIDE": 48,
    "SPLIT_BLOCK": 200,
    "VAL_FRACTION": 0.25,
    "TEST_FRACTION": 0.15,
    "SEED": 5,
}


def read(path: Path | str) -> tuple[np.ndarray, gdal.Dataset]:
    dataset = gdal.Open(str(path))
    return dataset.ReadAsArray(), dataset


def chip_window(record: dict[str, Any]) -> tuple[int, int, int, int]:
    return record["col_off"], record["row_off"], record["size"], record["size"]


def index_records(folder: Path) -> list[dict[str, Any]]:
    """The index features as dicts with the footprint WKT (read with OGR, not the writer)."""
    datasource = ogr.Open(str(folder / "index.gpkg"))
    layer = datasource.GetLayerByName("chips")
    records = []
    feature = layer.GetNextFeature()
    while feature is not None:  # ends with no feature alive when the datasource closes
        record = feature.items()
        record["geometry"] = feature.GetGeometryRef().ExportToWkt()
        records.append(record)
        feature = layer.GetNextFeature()
    return records


def chip_bounds(path: Path) -> tuple[float, float, float, float]:
    dataset = gdal.Open(str(path))
    x0, dx, _, y0, _, dy = dataset.GetGeoTransform()
    return x0, y0 + dy * dataset.RasterYSize, x0 + dx * dataset.RasterXSize, y0


@pytest.fixture(scope="module")
def solaris_mask(run_processing, shared_data, tmp_path_factory) -> Path:
    mask = tmp_path_factory.mktemp("solaris_mask") / "mask.tif"
    run_processing(
        "rsdl:rasterizelabels",
        {
            "INPUT": [str(shared_data / SOLARIS_LABELS)],
            "REFERENCE": str(shared_data / SOLARIS),
            "BURN_VALUE": 1,
            "IGNORE_VALUE": 255,
            "OUTPUT": str(mask),
        },
    )
    return mask


@pytest.fixture(scope="module")
def solaris_export(
    run_processing, solaris_mask, shared_data, tmp_path_factory
) -> tuple[Path, dict[str, Any]]:
    """Chips in both modes from the solaris image and its rasterized mask."""
    output = tmp_path_factory.mktemp("solaris_export") / "chips"
    parameters = {"INPUT": str(shared_data / SOLARIS), "MASK": str(solaris_mask), "MODE": 2, "MIN_COVER": 0.1}
    result = run_processing(ALG, {**parameters, **CHIPS, "OUTPUT": str(output)})
    return output, result


def test_chips_equal_the_source_windows(solaris_export, solaris_mask, shared_data):
    folder, _ = solaris_export
    source = gdal.Open(str(shared_data / SOLARIS))
    mask = gdal.Open(str(solaris_mask))
    sx0, sdx, _, sy0, _, sdy = source.GetGeoTransform()
    records = [r for r in index_records(folder) if r["image"]]
    assert len(records) > 100
    for record in records:
        col, row, width, height = chip_window(record)
        image, chip = read(folder / record["image"])
        assert image.dtype == np.uint16
        assert np.array_equal(image, source.ReadAsArray(col, row, width, height))
        assert chip.GetGeoTransform() == pytest.approx(
            (sx0 + col * sdx, sdx, 0, sy0 + row * sdy, 0, sdy), abs=1e-9
        )
        assert chip.GetRasterBand(1).GetNoDataValue() == source.GetRasterBand(1).GetNoDataValue()
        assert osr.SpatialReference(chip.GetProjection()).IsSame(osr.SpatialReference(source.GetProjection()))
        labels, mask_chip = read(folder / record["mask"])
        assert np.array_equal(labels, mask.ReadAsArray(col, row, width, height))
        assert mask_chip.GetGeoTransform() == chip.GetGeoTransform()
        band = mask_chip.GetRasterBand(1)
        assert band.GetNoDataValue() == 255 and band.GetColorTable() is not None
    assert not list(folder.rglob("*.aux.xml"))


def test_index_has_one_footprint_per_chip(solaris_export):
    folder, result = solaris_export
    records = index_records(folder)
    chips_on_disk = sorted(p.relative_to(folder).as_posix() for p in folder.glob("*/images/*.tif"))
    assert sorted(r["image"] for r in records) == chips_on_disk
    assert len({r["chip_id"] for r in records}) == len(records)
    for record in records:
        xmin, ymin, xmax, ymax = chip_bounds(folder / record["image"])
        footprint = ogr.CreateGeometryFromWkt(record["geometry"])
        assert footprint.GetEnvelope() == pytest.approx((xmin, xmax, ymin, ymax), abs=1e-6)
        assert footprint.GetArea() == pytest.approx((xmax - xmin) * (ymax - ymin))
        assert record["chip_id"] == f"r{record['row_off']:06d}_c{record['col_off']:06d}"
        labels, _ = read(folder / record["mask"])
        assert record["px_0"] == int((labels == 0).sum()) and record["px_1"] == int((labels == 1).sum())
        assert record["ignored_frac"] == pytest.approx(float((labels == 255).mean()))
        assert record["labelled_frac"] == pytest.approx(1.0 - record["ignored_frac"])
    assert result["INDEX"] == str(folder / "index.gpkg")


def test_no_validation_or_test_chip_overlaps_another_split(solaris_export):
    folder, result = solaris_export
    by_split: dict[str, list[ogr.Geometry]] = {"train": [], "val": [], "test": []}
    for record in index_records(folder):
        by_split[record["split"]].append(ogr.CreateGeometryFromWkt(record["geometry"]))
    assert all(by_split.values()), {k: len(v) for k, v in by_split.items()}
    nearest = []
    for first, second in (("train", "val"), ("train", "test"), ("val", "test")):
        union = ogr.Geometry(ogr.wkbMultiPolygon)
        for geometry in by_split[first]:
            union.AddGeometry(geometry)
        union = union.UnionCascaded()
        for geometry in by_split[second]:
            assert geometry.Intersection(union).GetArea() == 0.0
        nearest.append(min(geometry.Distance(union) for geometry in by_split[second]))
    # The splits meet: some chips of different splits are closer than one chip (64 px of 0.5 m).
    assert min(nearest) < 32.0
    assert json.loads(result["CHIP_COUNTS"])["dropped_straddling_splits"] > 0


def test_dataset_json_agrees_with_files_and_statistics(solaris_export, shared_data, solaris_mask):
    folder, result = solaris_export
    document = load_dataset_document(folder)
    counts = json.loads(result["CHIP_COUNTS"])
    assert document["counts"] == counts
    statistics = json.loads(result["STATISTICS"])
    assert document["statistics"] == statistics
    total = 0
    for split in ("train", "val", "test"):
        images = sorted((folder / split / "images").glob("*.tif"))
        masks = sorted((folder / split / "masks").glob("*.tif"))
        assert counts[split] == len(images) == len(masks) > 0
        total += len(images)
        # Class pixel counts recomputed from the mask chips on disk.
        stacked = np.stack([read(path)[0] for path in masks])
        pixels = {row["value"]: row["pixels"] for row in statistics[split]["classes"]}
        assert pixels == {0: int((stacked == 0).sum()), 1: int((stacked == 1).sum())}
        assert statistics[split]["ignored_pixels"] == int((stacked == 255).sum())
        assert statistics[split]["chips"] == len(masks)
    assert counts["total"] == total
    assert document["chip_size"] == 64 and document["stride"] == 48
    assert document["image"]["band_count"] == 1 and document["image"]["dtype"] == "uint16"
    assert document["image"]["nodata"] == [0.0]
    assert document["image"]["path"] == str(shared_data / SOLARIS)
    assert document["labels"]["mask"] == str(solaris_mask) and document["labels"]["dtype"] == "uint8"
    assert document["background_value"] == 0 and document["ignore_value"] == 255
    assert document["classes"] == [
        {"value": 0, "name": "background", "color": "#000000", "folder": "background"},
        {"value": 1, "name": "geotiff_labels", "color": "#e31a1c", "folder": "geotiff_labels"},
    ]
    assert document["split"] == {
        "val_fraction": 0.25,
        "test_fraction": 0.15,
        "block_size": 200,
        "seed": 5,
        "blocks": {"train": 15, "val": 6, "test": 4},  # 5 x 5 blocks of 200 px on 900 px
    }


def test_classification_folders_follow_the_cover_rule(solaris_export):
    folder, _ = solaris_export
    document = load_dataset_document(folder)
    records = {r["chip_id"]: r for r in index_records(folder)}
    seen = 0
    for split, per_class in document["classification_counts"].items():
        for class_folder, count in per_class.items():
            files = sorted((folder / "classification" / split / class_folder).glob("*.tif"))
            assert len(files) == count > 0
            for path in files:
                record = records[path.stem]
                labels, _ = read(folder / record["mask"])
                share = float((labels == 1).sum()) / float((labels != 255).sum())
                if class_folder == "background":
                    assert share == 0.0
                else:
                    assert class_folder == "geotiff_labels" and share >= 0.1
                assert np.array_equal(read(path)[0], read(folder / record["image"])[0])
                assert record["class_image"] == path.relative_to(folder).as_posix()
                seen += 1
    unclassified = [r for r in records.values() if r["chip_class"] is None]
    for record in unclassified:  # ambiguous: some building, but less than MIN_COVER
        labels, _ = read(folder / record["mask"])
        assert 0.0 < float((labels == 1).sum()) / float((labels != 255).sum()) < 0.1
    assert seen + len(unclassified) == len(records)
    assert {"background", "geotiff_labels"} <= {
        p.name for p in (folder / "classification" / "train").iterdir()
    }


def test_vector_labels_give_the_same_mask_chips(run_algorithm, solaris_export, shared_data, tmp_path):
    folder, _ = solaris_export
    output = tmp_path / "from_vectors"
    run_algorithm(
        ALG,
        {
            "INPUT": str(shared_data / SOLARIS),
            "LABELS": [str(shared_data / SOLARIS_LABELS)],
            "BURN_VALUE": 1,
            "IGNORE_VALUE": 255,
            **CHIPS,
            "OUTPUT": str(output),
        },
    )
    expected = sorted(p.relative_to(folder) for p in folder.glob("*/masks/*.tif"))
    actual = sorted(p.relative_to(output) for p in output.glob("*/masks/*.tif"))
    assert actual == expected
    for relative in expected:
        assert np.array_equal(read(output / relative)[0], read(folder / relative)[0])
    assert not (output / "classification").exists()  # segmentation is the default mode
    assert sorted(p.name for p in output.iterdir()) == ["dataset.json", "index.gpkg", "test", "train", "val"]
    assert load_dataset_document(output)["labels"]["layers"] == [str(shared_data / SOLARIS_LABELS)]
    assert leftover_temporaries(tmp_path) == []


def planned_offsets(length: int, size: int) -> list[int]:
    offsets = list(range(0, length - size + 1, size))
    return offsets if offsets[-1] + size == length else [*offsets, length - size]


def test_nodata_chips_are_skipped(run_algorithm, shared_data, tmp_path):
    image = shared_data / "rasterio_rgb/RGB.byte.tif"
    mask = tmp_path / "box.tif"
    run_algorithm(
        "rsdl:rasterizelabels",
        {"INPUT": [str(shared_data / "rasterio_rgb/box.shp")], "REFERENCE": str(image), "OUTPUT": str(mask)},
    )
    output = tmp_path / "rgb_chips"
    result = run_algorithm(
        ALG,
        {"INPUT": str(image), "MASK": str(mask), "CHIP_SIZE": 64, "VAL_FRACTION": 0.0, "OUTPUT": str(output)},
    )
    source = gdal.Open(str(image))
    all_nodata = kept = 0
    for row in planned_offsets(source.RasterYSize, 64):
        for col in planned_offsets(source.RasterXSize, 64):
            window = source.ReadAsArray(col, row, 64, 64)
            chip = output / "train" / "images" / f"r{row:06d}_c{col:06d}.tif"
            if (window == 0).any(axis=0).all():  # the collar: every pixel nodata 0 in some band
                all_nodata += 1
                assert not chip.exists()
            else:
                kept += 1
                image_chip, dataset = read(chip)
                assert np.array_equal(image_chip, window)
                assert [dataset.GetRasterBand(i).GetNoDataValue() for i in (1, 2, 3)] == [0, 0, 0]
    counts = json.loads(result["CHIP_COUNTS"])
    assert all_nodata > 0
    assert counts["skipped_nodata"] == all_nodata and counts["train"] == kept
    assert counts["skipped_all_ignore"] == 0


def test_keep_empty_zero_keeps_only_chips_with_foreground(run_algorithm, solaris_mask, shared_data, tmp_path):
    output = tmp_path / "no_empty"
    result = run_algorithm(
        ALG,
        {
            "INPUT": str(shared_data / SOLARIS),
            "MASK": str(solaris_mask),
            "CHIP_SIZE": 100,
            "VAL_FRACTION": 0.0,
            "KEEP_EMPTY": 0.0,
            "OUTPUT": str(output),
        },
    )
    mask = gdal.Open(str(solaris_mask)).ReadAsArray()
    windows = [mask[r : r + 100, c : c + 100] for r in range(0, 900, 100) for c in range(0, 900, 100)]
    with_buildings = sum(int((w == 1).any()) for w in windows)
    counts = json.loads(result["CHIP_COUNTS"])
    assert counts["train"] == with_buildings and counts["dropped_empty"] == 81 - with_buildings > 0
    for path in (output / "train" / "masks").glob("*.tif"):
        assert (read(path)[0] == 1).any()


def test_same_seed_same_chips(run_algorithm, solaris_mask, shared_data, tmp_path):
    def split_of_chips(seed: int, name: str) -> dict[str, str]:
        parameters = {"INPUT": str(shared_data / SOLARIS), "MASK": str(solaris_mask), "CHIP_SIZE": 100}
        run_algorithm(
            ALG,
            {
                **parameters,
                "SPLIT_BLOCK": 300,
                "KEEP_EMPTY": 0.5,
                "SEED": seed,
                "OUTPUT": str(tmp_path / name),
            },
        )
        return {r["chip_id"]: r["split"] for r in index_records(tmp_path / name)}

    first = split_of_chips(1, "a")
    assert split_of_chips(1, "b") == first
    assert split_of_chips(2, "c") != first


def mismatched_masks(mask: Path, folder: Path) -> dict[str, Path]:
    smaller = folder / "smaller.tif"
    gdal.Translate(str(smaller), str(mask), srcWin=[0, 0, 800, 900])
    shifted = folder / "shifted.tif"
    gdal.Translate(str(shifted), str(mask))
    dataset = gdal.Open(str(shifted), gdal.GA_Update)
    x0, dx, rx, y0, ry, dy = dataset.GetGeoTransform()
    dataset.SetGeoTransform((x0 + dx / 2, dx, rx, y0, ry, dy))
    dataset = None
    other_crs = folder / "other_crs.tif"
    gdal.Translate(str(other_crs), str(mask), outputSRS="EPSG:32617")
    return {"smaller": smaller, "shifted": shifted, "other_crs": other_crs}


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("smaller", r"'smaller' is not on the grid of 'sample_geotiff'.*800 x 900 px"),
        ("shifted", r"'shifted' is not on the grid of 'sample_geotiff'.*origin \(733601.25,"),
        ("other crs", r"'sample_geotiff' is .*EPSG:32616; 'other_crs' is .*EPSG:32617"),
        ("no labels", r"Give the labels: a label mask raster \(MASK\) or vector label layers"),
        ("both labels", r"not both"),
        ("fractions sum", r"VAL_FRACTION \+ TEST_FRACTION is 1.1"),
        ("negative fraction", r"VAL_FRACTION must be between 0 and 1"),
        ("keep empty", r"KEEP_EMPTY must be between 0 and 1"),
        ("tiny chip", r"CHIP_SIZE must be at least 8"),
        ("huge chip", r"CHIP_SIZE \(1000 px\) is larger than the image \(900 x 900 px\)"),
        ("negative stride", r"STRIDE must be a positive"),
        ("small block", r"SPLIT_BLOCK \(32 px\) is smaller than CHIP_SIZE"),
    ],
)
def test_bad_inputs_are_refused_and_leave_nothing(
    run_algorithm, case, message, solaris_mask, shared_data, tmp_path
):
    masks_folder = tmp_path / "masks"
    masks_folder.mkdir()
    bad_masks = mismatched_masks(solaris_mask, masks_folder)
    parameters: dict[str, Any] = {
        "INPUT": str(shared_data / SOLARIS),
        "MASK": str(solaris_mask),
        "CHIP_SIZE": 64,
    }
    changes: dict[str, dict[str, Any]] = {
        "smaller": {"MASK": str(bad_masks["smaller"])},
        "shifted": {"MASK": str(bad_masks["shifted"])},
        "other crs": {"MASK": str(bad_masks["other_crs"])},
        "no labels": {"MASK": None},
        "both labels": {"LABELS": [str(shared_data / SOLARIS_LABELS)]},
        "fractions sum": {"VAL_FRACTION": 0.7, "TEST_FRACTION": 0.4},
        "negative fraction": {"VAL_FRACTION": -0.1},
        "keep empty": {"KEEP_EMPTY": 2},
        "tiny chip": {"CHIP_SIZE": 4},
        "huge chip": {"CHIP_SIZE": 1000},
        "negative stride": {"STRIDE": -8},
        "small block": {"SPLIT_BLOCK": 32},
    }
    output = tmp_path / "out" / "chips"
    output.parent.mkdir()
    with pytest.raises(QgsProcessingException, match=message):
        run_algorithm(ALG, {**parameters, **changes[case], "OUTPUT": str(output)})
    assert list(output.parent.iterdir()) == []
    assert leftover_temporaries(tmp_path) == []


def test_existing_non_empty_folder_is_refused(run_algorithm, solaris_mask, shared_data, tmp_path):
    output = tmp_path / "chips"
    output.mkdir()
    (output / "keep.txt").write_text("mine")
    with pytest.raises(QgsProcessingException, match="already exists and is not empty"):
        run_algorithm(
            ALG,
            {
                "INPUT": str(shared_data / SOLARIS),
                "MASK": str(solaris_mask),
                "CHIP_SIZE": 64,
                "OUTPUT": str(output),
            },
        )
    assert [p.name for p in output.iterdir()] == ["keep.txt"]
    assert leftover_temporaries(tmp_path) == []


def test_an_existing_empty_folder_is_used(run_algorithm, solaris_mask, shared_data, tmp_path):
    output = tmp_path / "chips"
    output.mkdir()
    run_algorithm(
        ALG,
        {
            "INPUT": str(shared_data / SOLARIS),
            "MASK": str(solaris_mask),
            "CHIP_SIZE": 300,
            "VAL_FRACTION": 0,
            "OUTPUT": str(output),
        },
    )
    assert (output / "dataset.json").is_file()


class CancelAfterProgressCalls(QgsProcessingFeedback):
    """Presses cancel after a number of progress reports."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.calls_left = calls
        self.progressChanged.connect(self._count)

    def _count(self, _progress: float) -> None:
        self.calls_left -= 1
        if self.calls_left == 0:
            self.cancel()


@pytest.mark.parametrize(("labels", "calls"), [("mask", 3), ("mask", 25), ("vectors", 1), ("vectors", 20)])
def test_cancel_leaves_nothing(run_algorithm, labels, calls, solaris_mask, shared_data, tmp_path):
    output = tmp_path / "chips"
    source = {"MASK": str(solaris_mask)}
    if labels == "vectors":
        source = {"LABELS": [str(shared_data / SOLARIS_LABELS)], "BURN_VALUE": 1}
    feedback = CancelAfterProgressCalls(calls)
    with pytest.raises(QgsProcessingException, match=r"[Cc]ancel"):
        run_algorithm(
            ALG,
            {"INPUT": str(shared_data / SOLARIS), **source, "CHIP_SIZE": 32, "OUTPUT": str(output)},
            feedback,
        )
    assert feedback.isCanceled()
    assert list(tmp_path.iterdir()) == []


def test_sparse_mask_without_metadata_in_classification_mode(run_algorithm, shared_data, tmp_path):
    """A plain mask (nodata 0, values 1..4, no class names) under a 10-band mosaic."""
    image = shared_data / "rsgislib_aber_s2/sen2_20210527_aber_mosaic.vrt"
    mask_path = shared_data / "rsgislib_aber_s2/aber_landcover_4class_refmask.tif"
    output = tmp_path / "aber"
    parameters = {"INPUT": str(image), "MASK": str(mask_path), "CHIP_SIZE": 32, "MODE": 1, "MIN_COVER": 0.6}
    result = run_algorithm(ALG, {**parameters, "VAL_FRACTION": 0.0, "OUTPUT": str(output)})
    source = gdal.Open(str(image))
    mask = gdal.Open(str(mask_path)).ReadAsArray()
    expected: dict[str, str] = {}
    all_ignore = ambiguous = 0
    for row in planned_offsets(mask.shape[0], 32):
        for col in planned_offsets(mask.shape[1], 32):
            window = mask[row : row + 32, col : col + 32]
            counts = np.bincount(window.ravel(), minlength=5)[1:]  # 0 is nodata: the ignore value
            if counts.sum() == 0:
                all_ignore += 1
            elif counts.max() >= 0.6 * counts.sum():
                expected[f"r{row:06d}_c{col:06d}"] = f"class_{int(np.argmax(counts)) + 1}"
            else:
                ambiguous += 1
    written = {p.stem: p.parent.name for p in output.glob("classification/train/*/*.tif")}
    assert written == expected
    counts = json.loads(result["CHIP_COUNTS"])
    assert counts["skipped_all_ignore"] == all_ignore and counts["dropped_ambiguous_class"] == ambiguous
    assert not (output / "train").exists()  # classification only
    some_chip = sorted(output.glob("classification/train/*/*.tif"))[0]
    record = next(r for r in index_records(output) if r["chip_id"] == some_chip.stem)
    chip, dataset = read(some_chip)
    assert dataset.RasterCount == 10 and record["image"] is None and record["mask"] is None
    assert np.array_equal(chip, source.ReadAsArray(*chip_window(record)))
    document = load_dataset_document(output)
    assert document["background_value"] is None and document["ignore_value"] == 0
    assert [(c["value"], c["name"], c["folder"]) for c in document["classes"]] == [
        (value, f"class_{value}", f"class_{value}") for value in (1, 2, 3, 4)
    ]
    assert document["image"]["band_count"] == 10
