"""The bad-input table: every odd raster, vector, model and parameter, through every algorithm it
reaches, with what must happen.

A case is refused (a clear error: the message names the input and says the way out) or accepted
(the outputs are complete, and a check says they are right). ``QGIS_PROCESS`` marks the cases that
also run through the qgis_process binary: a representative subset (each costs about a second).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import onnxruntime
from osgeo import gdal, ogr

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec
from tests.robustness.checks import Inputs
from tests.robustness.inputs import NODATA_COLS, NODATA_ROWS

IN_QGIS = "qgis"
QGIS_PROCESS = "qgis_process"
BOTH = (IN_QGIS, QGIS_PROCESS)

Value = Union[Any, Callable[[Inputs, Path], Any]]
Check = Callable[[Inputs, dict[str, Any], dict[str, Any], str], None]  # inputs, parameters, results, log


@dataclass(frozen=True)
class Refused:
    names: str  # text the message must contain: the input's file or layer name, or the parameter
    fix: str  # regular expression of the way out


@dataclass(frozen=True)
class Accepted:
    check: Check | None = None


@dataclass(frozen=True)
class Case:
    kind: str  # raster, vector, model, hostile model, parameter
    name: str
    algorithm: str
    values: dict[str, Value]
    expect: Refused | Accepted
    runs: tuple[str, ...] = (IN_QGIS,)

    @property
    def id(self) -> str:
        return f"{self.algorithm.split(':')[1]}-{self.name}"

    def parameters(self, inputs: Inputs, out: Path) -> dict[str, Any]:
        return {key: value(inputs, out) if callable(value) else value for key, value in self.values.items()}


# -- parameter builders --------------------------------------------------------------------------


def raster(name: str) -> Callable[[Inputs, Path], str]:
    return lambda inputs, _out: inputs[name]


def model(name: str) -> Callable[[Inputs, Path], str]:
    return lambda inputs, _out: inputs.model(name)


def layers(*names: str) -> Callable[[Inputs, Path], list[str]]:
    return lambda inputs, _out: [inputs[name] for name in names]


def out(name: str) -> Callable[[Inputs, Path], str]:
    return lambda _inputs, folder: str(folder / name)


def fixed(path: str) -> Callable[[Inputs, Path], str]:
    """An output path outside the run's folder (a read-only or impossible place)."""
    return lambda _inputs, _folder: path


def under_a_file(name: str) -> Callable[[Inputs, Path], str]:
    """A path whose 'folder' is a regular file (the input raster): no folder can be made there."""
    return lambda inputs, _folder: f"{inputs['rgb']}/{name}"


def segment(input_raster: str = "rgb", model_name: str = "fcn_seg.onnx", **values: Value) -> dict[str, Value]:
    return {"INPUT": raster(input_raster), "MODEL": model(model_name), "OUTPUT": out("classes.tif"), **values}


def classify_tiles(
    input_raster: str = "rgb", model_name: str = "classifier.onnx", **values: Value
) -> dict[str, Value]:
    return {"INPUT": raster(input_raster), "MODEL": model(model_name), "OUTPUT": out("tiles.gpkg"), **values}


def classify_features(
    features: str = "labels", input_raster: str = "rgb", model_name: str = "classifier.onnx", **values: Value
) -> dict[str, Value]:
    return {
        "INPUT": raster(features),
        "RASTER": raster(input_raster),
        "MODEL": model(model_name),
        "OUTPUT": out("features.gpkg"),
        **values,
    }


def rasterize(
    labels: tuple[str, ...] = ("labels",), reference: str = "rgb", **values: Value
) -> dict[str, Value]:
    return {"INPUT": layers(*labels), "REFERENCE": raster(reference), "OUTPUT": out("mask.tif"), **values}


def export(image: str = "rgb", labels: tuple[str, ...] = ("labels",), **values: Value) -> dict[str, Value]:
    base = {"INPUT": raster(image), "LABELS": layers(*labels), "CHIP_SIZE": 16, "VAL_FRACTION": 0}
    return {**base, "OUTPUT": out("chips"), **values}


def model_info(model_name: str, **values: Value) -> dict[str, Value]:
    return {"MODEL": model(model_name), **values}


SEGMENT, TILES, FEATURES = "rsdl:segment", "rsdl:classifytiles", "rsdl:classifyfeatures"
RASTERIZE, EXPORT, INFO = "rsdl:rasterizelabels", "rsdl:exportchips", "rsdl:modelinfo"


# -- checks of accepted cases --------------------------------------------------------------------


def read(path: str | Path) -> np.ndarray:
    return gdal.Open(str(path)).ReadAsArray()


def input_nodata(inputs: Inputs, name: str) -> np.ndarray:
    """Where any band of the input raster is nodata (the reader's rule for model inputs)."""
    dataset = gdal.Open(inputs[name])
    nodata = np.zeros((dataset.RasterYSize, dataset.RasterXSize), bool)
    for index in range(1, dataset.RasterCount + 1):
        band = dataset.GetRasterBand(index)
        values, value = band.ReadAsArray(), band.GetNoDataValue()
        nodata |= np.isnan(values) if value is not None and np.isnan(value) else values == value
    return nodata


def nodata_stays_nodata(name: str, warning: str | None = None) -> Check:
    """The class raster is nodata exactly where the input is: no NaN halo, no lost pixel."""

    def check(inputs: Inputs, parameters: dict[str, Any], _results: dict[str, Any], log: str) -> None:
        classes = read(parameters["OUTPUT"])
        expected = input_nodata(inputs, name)
        assert expected.any() and not expected.all()
        assert np.array_equal(classes == 255, expected), (
            f"{int(((classes == 255) != expected).sum())} px differ"
        )
        if warning:
            assert re.search(warning, log), log

    return check


def features(path: str) -> list[dict[str, Any]]:
    datasource = ogr.Open(path)
    return [feature.items() for feature in datasource.GetLayer(0)]


def every_feature_classified(count: int | None = None) -> Check:
    """Every written feature has a class: nodata pixels (NaN) never reach the model."""

    def check(_inputs: Inputs, parameters: dict[str, Any], _results: dict[str, Any], _log: str) -> None:
        written = features(parameters["OUTPUT"])
        assert written and all(feature["class_id"] is not None for feature in written), written
        if count is not None:
            assert len(written) == count

    return check


def ignore_where_image_nodata(name: str) -> Check:
    def check(inputs: Inputs, parameters: dict[str, Any], _results: dict[str, Any], _log: str) -> None:
        mask = read(parameters["OUTPUT"])
        dataset = gdal.Open(inputs[name])
        nodata = np.ones(mask.shape, bool)  # a mask pixel is ignored where every band is nodata
        for index in range(1, dataset.RasterCount + 1):
            nodata &= dataset.GetRasterBand(index).GetMaskBand().ReadAsArray() == 0
        assert np.array_equal(mask == 255, nodata)

    return check


def nodata_chips_skipped(count: int) -> Check:
    def check(_inputs: Inputs, _parameters: dict[str, Any], results: dict[str, Any], _log: str) -> None:
        assert json.loads(results["CHIP_COUNTS"])["skipped_nodata"] == count

    return check


def log_says(pattern: str) -> Check:
    def check(_inputs: Inputs, _parameters: dict[str, Any], _results: dict[str, Any], log: str) -> None:
        assert re.search(pattern, log), log

    return check


def all_nodata_output(_inputs: Inputs, parameters: dict[str, Any], results: dict[str, Any], log: str) -> None:
    assert (read(parameters["OUTPUT"]) == 255).all()
    assert int(results["TILES"]) == 0
    assert "Every tile of raster 'all_nodata' is nodata" in log


def collar_skipped(inputs: Inputs, parameters: dict[str, Any], results: dict[str, Any], log: str) -> None:
    nodata_stays_nodata("rgb_byte")(inputs, parameters, results, log)
    assert "skipped (no data)" in log and not re.search(r", 0 skipped \(no data\)", log)


def some_tiles_skipped(
    _inputs: Inputs, _parameters: dict[str, Any], results: dict[str, Any], _log: str
) -> None:
    assert int(results["SKIPPED"]) > 0 and int(results["TILES"]) > 0


def one_pixel_output(
    _inputs: Inputs, parameters: dict[str, Any], _results: dict[str, Any], _log: str
) -> None:
    assert read(parameters["OUTPUT"]).shape == (1, 1)


def labels_burnt(values: dict[int, int] | None = None, repaired: int | None = None) -> Check:
    """The mask holds the classes (with exact pixel counts where given)."""

    def check(_inputs: Inputs, parameters: dict[str, Any], results: dict[str, Any], _log: str) -> None:
        mask = read(parameters["OUTPUT"])
        assert (mask[(mask != 0) & (mask != 255)]).size > 0, "no label pixel"
        for value, pixels in (values or {}).items():
            assert int((mask == value).sum()) == pixels, (value, int((mask == value).sum()))
        if repaired is not None:
            assert int(results["REPAIRED_GEOMETRIES"]) == repaired

    return check


def mixed_types_burnt(inputs: Inputs, parameters: dict[str, Any], results: dict[str, Any], log: str) -> None:
    # The 10 m square covers exactly 20 x 20 pixels: polygons are never buffered, even in a layer
    # of mixed types; the 2 m wide line and the point are.
    labels_burnt({1: 400})(inputs, parameters, results, log)
    mask = read(parameters["OUTPUT"])
    assert (mask == 2).any(axis=1).sum() >= 4 and (mask == 3).sum() >= 9
    assert "2 lines/points buffered" in log


def blank_classes_skipped(
    inputs: Inputs, parameters: dict[str, Any], results: dict[str, Any], log: str
) -> None:
    # "forest" and " forest " are one class; "", "   " and NULL are no class (skipped, logged).
    labels_burnt({1: 800, 2: 400})(inputs, parameters, results, log)
    names = json.loads(gdal.Open(parameters["OUTPUT"]).GetMetadataItem("RSDL_CLASSES"))
    assert [entry["name"] for entry in names.values()] == ["forest", "n/a"]
    assert "Skipped 3 features whose class field is NULL" in log


def geographic_mask(inputs: Inputs, parameters: dict[str, Any], results: dict[str, Any], log: str) -> None:
    labels_burnt()(inputs, parameters, results, log)
    assert (
        gdal.Open(parameters["OUTPUT"]).GetGeoTransform() == gdal.Open(inputs["geographic"]).GetGeoTransform()
    )


def chips_written(_inputs: Inputs, _parameters: dict[str, Any], results: dict[str, Any], _log: str) -> None:
    assert json.loads(results["CHIP_COUNTS"])["total"] > 0


def feature_count(count: int, warning: str | None = None) -> Check:
    def check(_inputs: Inputs, parameters: dict[str, Any], _results: dict[str, Any], log: str) -> None:
        assert len(features(parameters["OUTPUT"])) == count
        if warning:
            assert re.search(warning, log), log

    return check


def whole_image_pass(radius: int = 2) -> Check:
    """Centre-crop blending with an overlap wider than the receptive field equals one forward
    pass of the dynamic-size twin (same weights, fcn_seg.onnx) over the whole image: the oracle.

    Pixels within the receptive radius of the raster's edge are left out: where the tile plan
    starts flush with the edge (toolbelt's placement) they see the model's own zero padding.
    """

    def check(inputs: Inputs, parameters: dict[str, Any], _results: dict[str, Any], _log: str) -> None:
        image = read(parameters["INPUT"]).astype(np.float32)
        tested = onnxruntime.InferenceSession(parameters["MODEL"], providers=["CPUExecutionProvider"])
        spec = ModelSpec.from_metadata(tested.get_modelmeta().custom_metadata_map)
        twin = onnxruntime.InferenceSession(inputs.model("fcn_seg.onnx"), providers=["CPUExecutionProvider"])
        output = twin.run(None, {"input": spec.normalize(image[None])})[0][0]
        inner = (slice(radius, -radius), slice(radius, -radius))
        expected = output.argmax(axis=0)[inner]
        agreement = (read(parameters["OUTPUT"])[inner] == expected).mean()
        assert agreement > 0.999, agreement  # only exact ties may differ

    return check


def describes(model_type: str) -> Check:
    def check(_inputs: Inputs, _parameters: dict[str, Any], results: dict[str, Any], _log: str) -> None:
        assert results["MODEL_TYPE"] == model_type

    return check


# -- the table -----------------------------------------------------------------------------------

CORRUPT = r"truncated or corrupt"
NO_CRS = Refused("no_crs", r"[Aa]ssign")
ROTATED = Refused("rotated", r"rotated geotransform.*[Ww]arp it")
UNREADABLE = Refused("zero_size.tif", CORRUPT)
HEADER = Refused("truncated_header.tif", CORRUPT)
TRUNCATED = Refused("truncated.tif", CORRUPT)
GEOGRAPHIC = Refused("geographic", r"Reproject the raster")


def outside(name: str) -> Refused:
    return Refused(
        f"No label feature overlaps the output grid (0 features read from '{name}')", r"layers' CRS"
    )


READ_ONLY = r"not writable.*choose another folder"

RASTER_CASES = [
    Case("raster", "no CRS", SEGMENT, segment("no_crs"), NO_CRS, (QGIS_PROCESS,)),
    Case("raster", "no CRS", TILES, classify_tiles("no_crs"), NO_CRS),
    Case("raster", "no CRS", FEATURES, classify_features(input_raster="no_crs"), NO_CRS),
    Case("raster", "no CRS", RASTERIZE, rasterize(reference="no_crs"), NO_CRS),
    Case("raster", "no CRS", EXPORT, export("no_crs"), NO_CRS),
    Case("raster", "geographic", SEGMENT, segment("geographic"), GEOGRAPHIC),
    Case("raster", "geographic", TILES, classify_tiles("geographic"), GEOGRAPHIC),
    # Where the model states no resolution, degrees are fine.
    Case("raster", "geographic", SEGMENT, segment("geographic", "fcn_no_metadata.onnx"), Accepted()),
    Case("raster", "geographic", RASTERIZE, rasterize(reference="geographic"), Accepted(geographic_mask)),
    Case("raster", "geographic", EXPORT, export("geographic"), Accepted(chips_written)),
    Case("raster", "rotated", SEGMENT, segment("rotated"), ROTATED, BOTH),
    Case("raster", "rotated", RASTERIZE, rasterize(reference="rotated"), ROTATED),
    Case("raster", "rotated", EXPORT, export("rotated"), ROTATED),
    # Features are read through QGIS's north-up (warped) view of the raster: fine.
    Case(
        "raster", "rotated", FEATURES, classify_features(input_raster="rotated"), Accepted(feature_count(2))
    ),
    # GDAL cannot create a 0 x 0 raster: a 1 x 1 GeoTIFF whose header says 0 x 0 stands in.
    Case("raster", "0x0", SEGMENT, segment("zero_size"), UNREADABLE, BOTH),
    Case("raster", "0x0", RASTERIZE, rasterize(reference="zero_size"), UNREADABLE),
    Case("raster", "0x0", EXPORT, export("zero_size"), UNREADABLE),
    Case("raster", "0x0", FEATURES, classify_features(input_raster="zero_size"), UNREADABLE),
    Case("raster", "1x1", SEGMENT, segment("one_pixel", RESAMPLE=False), Accepted(one_pixel_output)),
    Case("raster", "1x1", TILES, classify_tiles("one_pixel", RESAMPLE=False), Accepted(feature_count(1))),
    Case("raster", "1x1", RASTERIZE, rasterize(reference="one_pixel"), Accepted(one_pixel_output)),
    Case(
        "raster",
        "1x1",
        EXPORT,
        export("one_pixel"),
        Refused("(1 x 1 px)", r"choose a chip size of at most 1"),
    ),
    # A 1 x 1 raster of 60 m pixels under a 50 cm model: resampling would be 120 times finer.
    Case(
        "raster",
        "1x1 resampled",
        SEGMENT,
        segment("one_pixel"),
        Refused("one_pixel", r"Switch off resampling"),
    ),
    Case("raster", "truncated", SEGMENT, segment("truncated"), TRUNCATED, BOTH),
    Case("raster", "truncated", TILES, classify_tiles("truncated"), TRUNCATED),
    Case("raster", "truncated", FEATURES, classify_features(input_raster="truncated"), TRUNCATED),
    Case("raster", "truncated", EXPORT, export("truncated"), TRUNCATED),
    # The reference only lends its grid (its header is whole); no pixel of it is read.
    Case("raster", "truncated", RASTERIZE, rasterize(reference="truncated"), Accepted(labels_burnt())),
    Case("raster", "truncated header", SEGMENT, segment("truncated_header"), HEADER),
    Case("raster", "truncated header", TILES, classify_tiles("truncated_header"), HEADER),
    Case("raster", "truncated header", RASTERIZE, rasterize(reference="truncated_header"), HEADER, BOTH),
    Case("raster", "truncated header", EXPORT, export("truncated_header"), HEADER),
    Case("raster", "1 band for 3", SEGMENT, segment("one_band"), Refused("one_band", r"band mapping"), BOTH),
    Case("raster", "1 band for 3", TILES, classify_tiles("one_band"), Refused("one_band", r"band mapping")),
    Case(
        "raster",
        "1 band for 3",
        FEATURES,
        classify_features(input_raster="one_band"),
        Refused("one_band", "band"),
    ),
    Case("raster", "all nodata", SEGMENT, segment("all_nodata"), Accepted(all_nodata_output), BOTH),
    Case(
        "raster",
        "all nodata",
        TILES,
        classify_tiles("all_nodata"),
        Accepted(feature_count(0, r"No tile of raster 'all_nodata' holds enough data")),
    ),
    Case(
        "raster",
        "all nodata",
        RASTERIZE,
        rasterize(reference="all_nodata"),
        Accepted(ignore_where_image_nodata("all_nodata")),
    ),
    Case("raster", "all nodata", EXPORT, export("all_nodata"), Refused("all_nodata", r"holds data")),
    Case(
        "raster",
        "nodata collar",
        SEGMENT,
        segment("rgb_byte", RESAMPLE=False, TILE_SIZE=128),
        Accepted(collar_skipped),
    ),
    Case(
        "raster",
        "nodata collar",
        TILES,
        classify_tiles("rgb_byte", RESAMPLE=False),
        Accepted(some_tiles_skipped),
    ),
    # 300 m Landsat pixels under a 50 cm model: resampling would make a grid of 2 x 10^11 pixels.
    Case(
        "raster",
        "nodata collar",
        SEGMENT,
        segment("rgb_byte"),
        Refused("Raster 'RGB'", r"Switch off resampling"),
    ),
    Case(
        "raster",
        "extent outside",
        TILES,
        classify_tiles(EXTENT="0,10,0,10 [EPSG:32636]"),
        Refused("'rgb'", r"choose an extent inside"),
    ),
]
for dtype in ("int16", "uint16", "float32", "float64"):
    RASTER_CASES += [
        Case(
            "raster",
            f"{dtype} nodata",
            SEGMENT,
            segment(dtype, RESAMPLE=False),
            Accepted(nodata_stays_nodata(dtype, "max_pixel_value")),
            BOTH if dtype == "float32" else (IN_QGIS,),
        ),
        Case(
            "raster", f"{dtype} nodata", TILES, classify_tiles(dtype), Accepted(every_feature_classified(4))
        ),
        Case(
            "raster",
            f"{dtype} nodata",
            RASTERIZE,
            rasterize(reference=dtype),
            Accepted(ignore_where_image_nodata(dtype)),
        ),
        Case("raster", f"{dtype} nodata", EXPORT, export(dtype), Accepted(nodata_chips_skipped(2))),
    ]
assert NODATA_ROWS < 32 and 32 <= NODATA_COLS < 48  # nodata_chips_skipped(2): two 16 px chips in it

VECTOR_CASES = [
    Case(
        "vector",
        "empty",
        RASTERIZE,
        rasterize(("empty",)),
        Refused("'empty' is empty", "[Cc]hoose"),
        (QGIS_PROCESS,),
    ),
    Case("vector", "empty", EXPORT, export(labels=("empty",)), Refused("'empty' is empty", "[Cc]hoose")),
    Case("vector", "empty", SEGMENT, segment(AREA=raster("empty")), Refused("'empty' is empty", "[Cc]hoose")),
    Case("vector", "empty", FEATURES, classify_features("empty"), Accepted(feature_count(0))),
    Case(
        "vector",
        "invalid",
        RASTERIZE,
        rasterize(("invalid",), FIELD="cls"),
        Accepted(labels_burnt(repaired=2)),
    ),
    Case("vector", "invalid", EXPORT, export(labels=("invalid",)), Accepted(chips_written)),
    Case("vector", "invalid", FEATURES, classify_features("invalid"), Accepted(feature_count(2))),
    Case(
        "vector",
        "invalid, no area",
        RASTERIZE,
        rasterize(("flat",)),
        Refused("'flat'", r"Fix Geometries"),
        BOTH,
    ),
    Case(
        "vector",
        "invalid, no area",
        SEGMENT,
        segment(AREA=raster("flat")),
        Refused("'flat'", r"Fix Geometries"),
    ),
    Case(
        "vector",
        "mixed types",
        RASTERIZE,
        rasterize(("mixed",), FIELD="cls", BUFFER_WIDTH=2),
        Accepted(mixed_types_burnt),
        BOTH,
    ),
    Case("vector", "mixed types", EXPORT, export(labels=("mixed",), FIELD="cls"), Accepted(chips_written)),
    Case("vector", "mixed types", FEATURES, classify_features("mixed"), Accepted(feature_count(3))),
    Case(
        "vector",
        "nulls and blanks",
        RASTERIZE,
        rasterize(("blank_classes",), FIELD="cls"),
        Accepted(blank_classes_skipped),
    ),
    Case(
        "vector",
        "nulls and blanks",
        EXPORT,
        export(labels=("blank_classes",), FIELD="cls"),
        Accepted(chips_written),
    ),
    Case(
        "vector",
        "all null",
        RASTERIZE,
        rasterize(("all_null",), FIELD="cls"),
        Refused("'all_null'", r"Fill the field"),
    ),
    Case("vector", "far CRS", RASTERIZE, rasterize(("far",)), outside("far"), BOTH),
    Case("vector", "far CRS", EXPORT, export(labels=("far",)), outside("far")),
    Case("vector", "far CRS", SEGMENT, segment(AREA=raster("far")), outside("far")),
    Case(
        "vector",
        "far CRS",
        FEATURES,
        classify_features("far"),
        Accepted(feature_count(1, r"1 feature\(s\) outside the raster")),
    ),
    Case("vector", "wrong CRS", RASTERIZE, rasterize(("wrong_crs",)), outside("wrong_crs")),
    Case("vector", "wrong CRS", EXPORT, export(labels=("wrong_crs",)), outside("wrong_crs")),
]

NOT_A_MODEL = Refused("not_a_model.onnx", r"Choose an \.onnx model")
TRUNCATED_MODEL = Refused("truncated.onnx", CORRUPT)
NON_SQUARE = Refused("fcn_seg_64x48.onnx", r"Export it with a square")
TWO_INPUTS = Refused("two_inputs.onnx", r"Export the model with a single input")
MISMATCH = Refused("class_mismatch.onnx", r"Fix 'class_names'")
MODEL_CASES = [
    Case("model", "not a model", SEGMENT, segment(model_name="not_a_model.onnx"), NOT_A_MODEL, BOTH),
    Case("model", "not a model", TILES, classify_tiles(model_name="not_a_model.onnx"), NOT_A_MODEL),
    Case("model", "not a model", FEATURES, classify_features(model_name="not_a_model.onnx"), NOT_A_MODEL),
    Case("model", "not a model", INFO, model_info("not_a_model.onnx"), NOT_A_MODEL),
    Case("model", "truncated", TILES, classify_tiles(model_name="truncated.onnx"), TRUNCATED_MODEL),
    Case("model", "truncated", FEATURES, classify_features(model_name="truncated.onnx"), TRUNCATED_MODEL),
    Case("model", "truncated", INFO, model_info("truncated.onnx"), TRUNCATED_MODEL, BOTH),
    Case("model", "no metadata", SEGMENT, segment(model_name="fcn_no_metadata.onnx"), Accepted()),
    Case("model", "no metadata", INFO, model_info("fcn_no_metadata.onnx"), Accepted(describes("Segmentor"))),
    Case(
        "model",
        "no metadata",
        TILES,
        classify_tiles(model_name="fcn_no_metadata.onnx"),
        Refused("rsdl:segment", "use rsdl:segment"),
    ),
    # Odd tiles, on a dynamic-size model and on a model fixed at 33 x 33: both equal the oracle.
    Case(
        "model",
        "dynamic size, odd tile",
        SEGMENT,
        segment(TILE_SIZE=33, OVERLAP=25, MERGE=3),
        Accepted(whole_image_pass()),
    ),
    Case(
        "model",
        "fixed odd tile",
        SEGMENT,
        segment(model_name="fcn_seg_33.onnx", OVERLAP=25, MERGE=3),
        Accepted(whole_image_pass()),
    ),
    Case("model", "non-square", SEGMENT, segment(model_name="fcn_seg_64x48.onnx"), NON_SQUARE),
    Case("model", "non-square", TILES, classify_tiles(model_name="fcn_seg_64x48.onnx"), NON_SQUARE),
    Case("model", "two inputs", SEGMENT, segment(model_name="two_inputs.onnx"), TWO_INPUTS),
    Case("model", "two inputs", TILES, classify_tiles(model_name="two_inputs.onnx"), TWO_INPUTS),
    Case("model", "two inputs", INFO, model_info("two_inputs.onnx"), TWO_INPUTS),
    Case(
        "model",
        "downsampled output",
        SEGMENT,
        segment(model_name="fcn_seg_downsampled.onnx"),
        Refused("fcn_seg_downsampled.onnx", r"Export the model with outputs at its input size"),
        BOTH,
    ),
    Case(
        "model",
        "downsampled output",
        INFO,
        model_info("fcn_seg_downsampled.onnx"),
        Accepted(describes("Segmentor")),
    ),
    Case(
        "model",
        "one value per tile",
        SEGMENT,
        segment(model_name="classifier.onnx"),
        Refused("classifier.onnx", r"Use rsdl:classifytiles"),
    ),
    Case("model", "class names mismatch", SEGMENT, segment(model_name="class_mismatch.onnx"), MISMATCH, BOTH),
    Case("model", "class names mismatch", TILES, classify_tiles(model_name="class_mismatch.onnx"), MISMATCH),
    Case("model", "class names mismatch", INFO, model_info("class_mismatch.onnx"), MISMATCH),
]

PICKLE = r"never unpickles.*Export the model to ONNX"
ESCAPES = r"must lie in the model's folder"
HOSTILE_CASES = [
    Case(
        "hostile model",
        "pickle",
        SEGMENT,
        segment(model_name="evil.pth"),
        Refused("evil.pth", PICKLE),
        (QGIS_PROCESS,),
    ),
    Case(
        "hostile model", "pickle", TILES, classify_tiles(model_name="evil.pth"), Refused("evil.pth", PICKLE)
    ),
    Case(
        "hostile model",
        "pickle",
        FEATURES,
        classify_features(model_name="evil.pth"),
        Refused("evil.pth", PICKLE),
    ),
    Case(
        "hostile model",
        "torch.save zip",
        SEGMENT,
        segment(model_name="evil_zip.pth"),
        Refused("evil_zip.pth", PICKLE),
    ),
    Case(
        "hostile model",
        "torch.save zip",
        INFO,
        model_info("evil_zip.pth"),
        Refused("evil_zip.pth", PICKLE),
        BOTH,
    ),
    Case(
        "hostile model",
        "TorchScript zip holding a pickle",
        SEGMENT,
        segment(model_name="evil_torchscript.pt"),
        Refused("evil_torchscript.pt", r"export it again"),
        BOTH,
    ),
    Case(
        "hostile model",
        "TorchScript zip holding a pickle",
        INFO,
        model_info("evil_torchscript.pt"),
        Refused("evil_torchscript.pt", r"export it again"),
    ),
    Case(
        "hostile model",
        "external data ../",
        SEGMENT,
        segment(model_name="escape/escape.onnx"),
        Refused("escape.onnx", ESCAPES),
        BOTH,
    ),
    Case(
        "hostile model",
        "external data ../",
        TILES,
        classify_tiles(model_name="escape/escape.onnx"),
        Refused("escape.onnx", ESCAPES),
    ),
    Case(
        "hostile model",
        "external data ../",
        INFO,
        model_info("escape/escape.onnx"),
        Refused("escape.onnx", ESCAPES),
    ),
    Case(
        "hostile model",
        "external data absolute",
        SEGMENT,
        segment(model_name="escape/absolute.onnx"),
        Refused("absolute.onnx", ESCAPES),
    ),
    Case(
        "hostile model",
        "external data absolute",
        INFO,
        model_info("escape/absolute.onnx"),
        Refused("absolute.onnx", ESCAPES),
    ),
    Case(
        "hostile model",
        "external data symlink",
        SEGMENT,
        segment(model_name="escape/symlink.onnx"),
        Refused("symlink.onnx", ESCAPES),
    ),
    Case(
        "hostile model",
        "external data symlink",
        INFO,
        model_info("escape/symlink.onnx"),
        Refused("symlink.onnx", ESCAPES),
    ),
]

NO_FOLDER = r"does not exist; create it or choose another"
PARAMETER_CASES = [
    Case(
        "parameter",
        "tile below minimum",
        SEGMENT,
        segment(TILE_SIZE=4),
        Refused("TILE_SIZE", r"must be at least 8"),
    ),
    Case(
        "parameter",
        "tile below minimum",
        TILES,
        classify_tiles(TILE_SIZE=4),
        Refused("TILE_SIZE", r"must be at least 8"),
    ),
    Case(
        "parameter",
        "overlap above maximum",
        SEGMENT,
        segment(OVERLAP=95),
        Refused("OVERLAP", r"between 0 and 90"),
    ),
    # The overlap is a share of the tile (at most 90 %), so it can never reach the tile size: the
    # smallest tile with the largest overlap (8 px, 7 px) still gives the exact result.
    Case(
        "parameter",
        "tile 8 px, overlap 90 %",
        SEGMENT,
        segment("small", TILE_SIZE=8, OVERLAP=90, MERGE=3),
        Accepted(whole_image_pass()),
    ),
    Case(
        "parameter",
        "batch size 0",
        SEGMENT,
        segment(BATCH_SIZE=0),
        Refused("BATCH_SIZE", r"between 1 and 4096"),
        BOTH,
    ),
    Case(
        "parameter",
        "batch size 0",
        TILES,
        classify_tiles(BATCH_SIZE=0),
        Refused("BATCH_SIZE", r"between 1 and 4096"),
    ),
    Case(
        "parameter",
        "batch size 0",
        FEATURES,
        classify_features(BATCH_SIZE=0),
        Refused("BATCH_SIZE", r"between 1 and 4096"),
    ),
    # The polygons' folder is checked before the class raster is written.
    Case(
        "parameter",
        "missing folder",
        SEGMENT,
        segment(OUTPUT_POLYGONS=fixed("/nonexistent-rsdl/polygons.gpkg")),
        Refused("OUTPUT_POLYGONS: The output folder '/nonexistent-rsdl'", NO_FOLDER),
        BOTH,
    ),
    Case(
        "parameter",
        "missing folder",
        TILES,
        classify_tiles(OUTPUT=fixed("/nonexistent-rsdl/t.gpkg")),
        Refused("/nonexistent-rsdl", NO_FOLDER),
    ),
    Case(
        "parameter",
        "missing folder",
        INFO,
        model_info("fcn_seg.onnx", OUTPUT_HTML=fixed("/nonexistent-rsdl/m.html")),
        Refused("/nonexistent-rsdl", NO_FOLDER),
    ),
    Case(
        "parameter",
        "missing folder",
        RASTERIZE,
        rasterize(STATISTICS=fixed("/nonexistent-rsdl/s.json")),
        Refused("STATISTICS: The output folder '/nonexistent-rsdl'", NO_FOLDER),
    ),
    Case(
        "parameter",
        "missing folder",
        EXPORT,
        export(OUTPUT=fixed("/nonexistent-rsdl/chips")),
        Refused("/nonexistent-rsdl", NO_FOLDER),
    ),
    Case(
        "parameter",
        "folder is a file",
        SEGMENT,
        segment(OUTPUT=under_a_file("x.tif")),
        Refused("rgb.tif' is a file", r"choose an output path inside a folder"),
        BOTH,
    ),
    Case(
        "parameter",
        "folder is a file",
        EXPORT,
        export(OUTPUT=under_a_file("chips")),
        Refused("rgb.tif' is a file", r"inside a folder"),
    ),
    # Root may write anywhere its permission bits say no, so chmod cannot make a read-only folder
    # here; /proc refuses new files even to root (a read-only mount: tests/robustness/test_faults.py).
    Case(
        "parameter",
        "read-only folder",
        SEGMENT,
        segment(OUTPUT=fixed("/proc/classes.tif")),
        Refused("'/proc'", READ_ONLY),
        BOTH,
    ),
    Case(
        "parameter",
        "read-only folder",
        TILES,
        classify_tiles(OUTPUT=fixed("/proc/tiles.gpkg")),
        Refused("'/proc'", READ_ONLY),
    ),
    Case(
        "parameter",
        "read-only folder",
        RASTERIZE,
        rasterize(OUTPUT=fixed("/proc/mask.tif")),
        Refused("'/proc'", READ_ONLY),
    ),
    Case(
        "parameter",
        "read-only folder",
        EXPORT,
        export(OUTPUT=fixed("/proc/chips")),
        Refused("'/proc'", READ_ONLY),
    ),
    Case(
        "parameter",
        "read-only folder",
        INFO,
        model_info("fcn_seg.onnx", OUTPUT_HTML=fixed("/proc/m.html")),
        Refused("'/proc'", READ_ONLY),
    ),
]

CASES = RASTER_CASES + VECTOR_CASES + MODEL_CASES + HOSTILE_CASES + PARAMETER_CASES
