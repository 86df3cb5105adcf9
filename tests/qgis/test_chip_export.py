"""qgis_io/chip_export.py: cutting chips strip by strip and writing the index and dataset.json,
checked against GDAL reads of the sources and OGR reads of the index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr, osr
from qgis.core import QgsProcessingFeedback, QgsRasterLayer

from rsdl_qgis_plugin.core.datasets.chip_export import (
    ChipExportSettings,
    chip_report_lines,
    empty_split_warnings,
)
from rsdl_qgis_plugin.core.datasets.chip_folder import load_dataset_document
from rsdl_qgis_plugin.core.datasets.chips import ChipMode, ChipPlan, ChipRules, Split, SplitSettings
from rsdl_qgis_plugin.core.errors import CancelledError, RsdlError
from rsdl_qgis_plugin.core.labels.label_rules import LabelClass, MaskValues
from rsdl_qgis_plugin.qgis_io.chip_export import (
    cut_chips,
    dtype_name,
    image_summary,
    labels_summary,
    write_chip_dataset,
)
from rsdl_qgis_plugin.qgis_io.label_source import LabelMask, LabelRules, LabelSource
from rsdl_qgis_plugin.qgis_io.mask_description import MaskDescription
from rsdl_qgis_plugin.qgis_io.raster_grid import grid_from_raster_layer, open_gdal

WIDTH, HEIGHT, CHIP = 160, 128, 32
IMAGE_NODATA = 0
IGNORE = 255
CLASSES = [LabelClass(1, "building", "#ff0000"), LabelClass(2, "water", "#0000ff")]


def georeferenced(path: Path, bands: int, data_type: int) -> gdal.Dataset:
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), WIDTH, HEIGHT, bands, data_type)
    dataset.SetGeoTransform((500000.0, 2.0, 0.0, 4000000.0, 0.0, -2.0))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32636)
    dataset.SetProjection(srs.ExportToWkt())
    return dataset


@pytest.fixture()
def scene(tmp_path: Path) -> tuple[Path, Path]:
    """A two-band uint16 image whose top-left 32 x 64 px are nodata, and a mask of classes 0-2."""
    rng = np.random.default_rng(1)
    image = georeferenced(tmp_path / "image.tif", 2, gdal.GDT_UInt16)
    pixels = rng.integers(1, 4000, (2, HEIGHT, WIDTH), dtype=np.uint16)
    pixels[:, :CHIP, : 2 * CHIP] = IMAGE_NODATA
    for band in range(2):
        image.GetRasterBand(band + 1).SetNoDataValue(IMAGE_NODATA)
        image.GetRasterBand(band + 1).WriteArray(pixels[band])
    image = None
    mask = georeferenced(tmp_path / "mask.tif", 1, gdal.GDT_Byte)
    labels = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    labels[40:90, 20:70] = 1
    labels[100:, 100:] = 2
    labels[0:10, 150:] = IGNORE
    mask.GetRasterBand(1).WriteArray(labels)
    mask = None
    return tmp_path / "image.tif", tmp_path / "mask.tif"


class Recorder(QgsProcessingFeedback):
    """Keeps the log and the progress; cancels after ``cancel_after`` progress reports."""

    def __init__(self, cancel_after: int | None = None) -> None:
        super().__init__()
        self.log: list[tuple[str, str]] = []
        self.progress: list[float] = []
        self.cancel_after = cancel_after
        self.progressChanged.connect(self._progress)

    def pushInfo(self, info: str) -> None:
        self.log.append(("info", info))

    def pushWarning(self, warning: str) -> None:
        self.log.append(("warning", warning))

    def _progress(self, value: float) -> None:
        self.progress.append(value)
        if self.cancel_after is not None and len(self.progress) == self.cancel_after:
            self.cancel()


def chip_settings(mode: ChipMode = ChipMode.SEGMENTATION, val: float = 0.25) -> ChipExportSettings:
    return ChipExportSettings(
        ChipPlan(WIDTH, HEIGHT, CHIP, 24),  # overlapping chips: some straddle split blocks
        SplitSettings(val_fraction=val, test_fraction=0.0, block_size=64, seed=4),
        ChipRules(mode=mode, background_value=None, min_cover=0.5, seed=4),
    )


def open_scene(image_path: Path, mask_path: Path, values: MaskValues | None = None):
    layer = QgsRasterLayer(str(image_path), "scene")
    assert layer.isValid()
    mask = LabelMask(gdal.Open(str(mask_path)), MaskDescription(CLASSES, values or MaskValues(0, IGNORE)))
    return layer, open_gdal(layer), grid_from_raster_layer(layer), mask


def test_chips_are_the_source_windows_and_every_planned_chip_is_counted(scene, tmp_path):
    image_path, mask_path = scene
    _, image, grid, mask = open_scene(image_path, mask_path)
    settings = chip_settings(ChipMode.BOTH)
    feedback = Recorder()
    output = tmp_path / "out"
    cutter = cut_chips(output, settings, image, mask, grid, feedback)

    source = gdal.Open(str(image_path)).ReadAsArray()
    labels = gdal.Open(str(mask_path)).ReadAsArray()
    nodata = (source == IMAGE_NODATA).any(axis=0)
    counts = cutter.tally.counts()
    assert counts["total"] == len(cutter.records) > 0
    # 5 chip rows (0..96) x 7 columns (0..120 and one flush at 128); "total" and the drop reasons add up
    drops = sum(v for k, v in counts.items() if k not in ("train", "val", "test", "total", "unclassified"))
    assert len(settings.plan) == 35 == counts["total"] + drops
    assert counts["skipped_nodata"] == 2 and counts["dropped_straddling_splits"] > 0
    for record in cutter.records:
        w = record.window
        expected_mask = labels[w.row : w.row + w.size, w.col : w.col + w.size].copy()
        expected_mask[nodata[w.row : w.row + w.size, w.col : w.col + w.size]] = IGNORE
        chip = gdal.Open(str(output / record.image_path))
        assert np.array_equal(chip.ReadAsArray(), source[:, w.row : w.row + w.size, w.col : w.col + w.size])
        assert np.array_equal(gdal.Open(str(output / record.mask_path)).ReadAsArray(), expected_mask)
        assert record.split == settings.block_split.split_of(w)
        values, pixels = np.unique(expected_mask[expected_mask != IGNORE], return_counts=True)
        assert record.counts == dict(zip(values.tolist(), pixels.tolist()))
        if record.class_value is not None:
            assert gdal.Open(str(output / record.class_path)).ReadAsArray().shape == (2, w.size, w.size)
    # background is the mask's value 0, so a chip of only 0 is classified "background"
    assert cutter.rules.background_value == 0 and settings.rules.background_value is None
    assert feedback.progress[-1] == 100.0 and feedback.progress == sorted(feedback.progress)
    assert len(feedback.progress) == len(settings.plan.row_offsets)


def test_cancel_stops_cutting_before_the_next_strip(scene, tmp_path):
    image_path, mask_path = scene
    _, image, grid, mask = open_scene(image_path, mask_path)
    feedback = Recorder(cancel_after=1)
    output = tmp_path / "out"
    with pytest.raises(CancelledError):
        cut_chips(output, chip_settings(), image, mask, grid, feedback)
    rows = {int(p.stem[1:7]) for p in output.rglob("*.tif")}
    assert rows == {0}  # cancelled after the first strip's progress report


def index_features(path: Path) -> list[dict]:
    datasource = ogr.Open(str(path))
    layer = datasource.GetLayerByName("chips")
    return [feature.items() for feature in layer]


def test_dataset_writing_agrees_with_the_cut_and_logs_the_report(scene, tmp_path):
    image_path, mask_path = scene
    layer, image, grid, mask = open_scene(image_path, mask_path)
    output = tmp_path / "out"
    cutter = cut_chips(output, chip_settings(val=0.25), image, mask, grid, Recorder())
    source = LabelSource(QgsRasterLayer(str(mask_path), "mask"), [], LabelRules())
    feedback = Recorder()
    statistics = write_chip_dataset(output, cutter, layer, image, source, feedback)

    document = load_dataset_document(output)
    assert document["counts"] == cutter.tally.counts()
    assert document["statistics"] == json.loads(json.dumps(statistics))
    assert document["image"]["path"] == str(image_path) and document["labels"]["mask"] == str(mask_path)
    assert [c["value"] for c in document["classes"]] == [0, 1, 2]
    assert document["split"]["blocks"] == chip_settings().block_split.block_counts()
    features = index_features(output / "index.gpkg")
    assert sorted(f["chip_id"] for f in features) == sorted(r.window.chip_id for r in cutter.records)
    labels = gdal.Open(str(mask_path)).ReadAsArray()
    for feature in features:
        window = labels[feature["row_off"] :, feature["col_off"] :][:CHIP, :CHIP]  # no nodata below row 32
        assert feature["row_off"] < CHIP or [feature[f"px_{v}"] for v in (0, 1, 2)] == [
            int((window == v).sum()) for v in (0, 1, 2)
        ]
    # the log: the report lines, then a warning per requested split without chips
    expected = [
        ("warning" if line.warning else "info", line.text)
        for line in chip_report_lines(cutter.tally, statistics)
    ] + [("warning", text) for text in empty_split_warnings(cutter.tally, cutter.settings.split)]
    assert feedback.log == expected
    assert feedback.log[0][1].startswith("Chips written: train ")
    assert set(statistics) == {split.value for split in Split if cutter.tally.written.get(split)}


def test_a_run_without_chips_is_refused_before_anything_is_written(scene, tmp_path):
    image_path, _ = scene
    all_ignore = tmp_path / "ignore.tif"
    dataset = georeferenced(all_ignore, 1, gdal.GDT_Byte)
    dataset.GetRasterBand(1).Fill(IGNORE)
    dataset = None
    layer, image, grid, mask = open_scene(image_path, all_ignore)
    output = tmp_path / "out"
    cutter = cut_chips(output, chip_settings(), image, mask, grid, Recorder())
    source = LabelSource(QgsRasterLayer(str(all_ignore), "ignore"), [], LabelRules())
    feedback = Recorder()
    with pytest.raises(RsdlError, match="No chip was written from image 'scene'"):
        write_chip_dataset(output, cutter, layer, image, source, feedback)
    assert (
        feedback.log == [] and not (output / "dataset.json").exists() and not (output / "index.gpkg").exists()
    )


def test_summaries_describe_the_image_and_the_labels(scene):
    image_path, mask_path = scene
    layer, image, grid, _ = open_scene(image_path, mask_path)
    summary = image_summary(layer, image, grid)
    oracle = gdal.Open(str(image_path))
    assert summary["band_count"] == oracle.RasterCount == 2 and summary["dtype"] == "uint16"
    assert summary["nodata"] == [float(IMAGE_NODATA)] * 2
    assert (summary["width"], summary["height"]) == (WIDTH, HEIGHT)
    assert summary["geotransform"] == list(oracle.GetGeoTransform())
    assert osr.SpatialReference(summary["crs_wkt"]).IsSame(osr.SpatialReference(oracle.GetProjection()))

    class Writer:
        mask_type = gdal.GDT_UInt16

    labels = labels_summary(LabelSource(None, [], LabelRules()), Writer())  # type: ignore[arg-type]
    assert labels == {"mask": None, "layers": [], "dtype": "uint16"}
    assert [dtype_name(t) for t in (gdal.GDT_Byte, gdal.GDT_Int16, gdal.GDT_Float32)] == [
        "uint8",
        "int16",
        "float32",
    ]
