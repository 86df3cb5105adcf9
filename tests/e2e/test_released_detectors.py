"""The released detectors in models/, run through qgis_process as an analyst runs them, and the
whole loop: the training package's held-out mAP, reproduced by rsdl:detect + rsdl:evaluateobjects.

The held-out chips and their reference boxes come from the training package's own data module
(the config the model was trained with, on ../shared/data), so QGIS is scored on exactly the
objects training was scored on. Each chip runs through rsdl:detect as one tile at its own pixels
(one forward pass, as in training); the chips' objects and references are then moved apart on the
map (each chip by its own offset, so objects of chips that share ground at other zoom levels never
meet) and pooled into one rsdl:evaluateobjects run, which is what COCO's per-image evaluation
pools too. The figure to reproduce is the validation mAP the exported file carries in its spec
(``training.metrics``, torchmetrics' MeanAveragePrecision at the saved epoch).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

pytestmark = pytest.mark.qgis_process
REPO = Path(__file__).resolve().parents[2]
CHIP_OFFSET = 10_000.0  # map units between chips once pooled: far beyond any chip's extent
WHOLE_LOOP_TOLERANCE = 0.01
TILED_WHOLE_MIN_RECALL = 0.8  # one pass's objects that the tiled run finds too, IoU >= 0.5


@dataclass(frozen=True)
class HeldOutChip:
    raster: Path
    row: int
    col: int
    size: int
    boxes: np.ndarray  # (N, 4) x1, y1, x2, y2 in chip pixels
    class_ids: np.ndarray  # 0-based, as the model's class_names


# Run apart: training reads rasters with rasterio's own GDAL, which must not share a process with
# the system GDAL that osgeo (and QGIS) load here.
_HELD_OUT_SCRIPT = """
import json, sys
import yaml
from training.data import RasterObjectsDataModule
from training.data.objects import object_targets

config, shared, cache, split = sys.argv[1:]
arguments = yaml.safe_load(open(config, encoding="utf-8"))["data"]["init_args"]
for key in ("raster", "labels"):  # the configs name ../shared/data from the repository root
    arguments[key] = arguments[key].replace("../shared/data", shared)
module = RasterObjectsDataModule(**{**arguments, "num_workers": 0, "cache_dir": cache})
module.setup("fit")
chips = []
for chip in module._items(split):
    number, row, col = chip.source
    targets = object_targets(chip.objects, module.class_table, None)
    chips.append({
        "raster": str(module.rasters[number].path), "row": row, "col": col, "size": module.chip_size,
        "boxes": targets["boxes"].tolist(), "class_ids": targets["class_ids"].tolist(),
    })
names = {str(k): v for k, v in module.model_spec().class_names.items()}
print(json.dumps({"chips": chips, "names": names}))
"""


def held_out_chips(
    config: str, shared_data: Path, cache: Path, split: str = "val"
) -> tuple[list[HeldOutChip], dict[int, str]]:
    """The ``split`` chips of a training config's data module, with their reference boxes, and the
    class names by 0-based class id."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("the training package (torch) is not installed here: it builds the held-out chips")
    config_path = REPO / "training" / "configs" / config
    command = [sys.executable, "-c", _HELD_OUT_SCRIPT, str(config_path), str(shared_data), str(cache), split]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    document = json.loads(done.stdout.strip().splitlines()[-1])
    chips = [
        HeldOutChip(
            Path(item["raster"]),
            item["row"],
            item["col"],
            item["size"],
            np.asarray(item["boxes"], dtype=np.float64).reshape(-1, 4),
            np.asarray(item["class_ids"], dtype=np.int64),
        )
        for item in document["chips"]
    ]
    assert chips, f"{config} has no {split} chips"
    return chips, {int(k): v for k, v in document["names"].items()}


def _chip_raster(chip: HeldOutChip, folder: Path, number: int) -> Path:
    source = gdal.Open(str(chip.raster))
    if (chip.row, chip.col, chip.size, chip.size) == (0, 0, source.RasterXSize, source.RasterYSize):
        return chip.raster
    path = folder / f"chip_{number}.tif"
    gdal.Translate(str(path), source, srcWin=[chip.col, chip.row, chip.size, chip.size])
    return path


def _box_ring(x1: float, y1: float, x2: float, y2: float) -> ogr.Geometry:
    return ogr.CreateGeometryFromWkt(f"POLYGON(({x1} {y1},{x2} {y1},{x2} {y2},{x1} {y2},{x1} {y1}))")


class _Layer:
    """A GeoPackage of boxes with class_name and score, written feature by feature."""

    def __init__(self, path: Path, srs: osr.SpatialReference) -> None:
        self.dataset = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
        self.layer = self.dataset.CreateLayer("objects", srs, ogr.wkbPolygon)
        self.layer.CreateField(ogr.FieldDefn("class_name", ogr.OFTString))
        self.layer.CreateField(ogr.FieldDefn("score", ogr.OFTReal))

    def add(self, geometry: ogr.Geometry, class_name: str, score: float) -> None:
        feature = ogr.Feature(self.layer.GetLayerDefn())
        feature.SetField("class_name", class_name)
        feature.SetField("score", score)
        feature.SetGeometry(geometry)
        self.layer.CreateFeature(feature)

    def close(self) -> None:
        self.layer = self.dataset = None


def detect_held_out(qgis_process, model: Path, chips: list[HeldOutChip], names: dict, folder: Path):
    """rsdl:detect on every chip (one tile, every detection the net returns), pooled with the
    references; returns (predictions path, references path, objects detected per chip)."""
    srs = None
    predictions = references = None
    found = []
    for number, chip in enumerate(chips):
        raster = _chip_raster(chip, folder, number)
        detected = folder / f"detected_{number}.gpkg"
        result = qgis_process.run_algorithm(
            "rsdl:detect",
            {
                "INPUT": str(raster),
                "MODEL": str(model),
                "TILE_SIZE": chip.size,
                "RESAMPLE": False,  # training saw every zoom level at its own pixels
                "CONFIDENCE_THRESHOLD": 0.0,  # mAP takes every detection
                "OUTPUT_GEOMETRY": 0,  # boxes, as training's box mAP
                "OUTPUT": str(detected),
            },
        )
        assert result["results"]["TILES"] == 1
        dataset = gdal.Open(str(chip.raster))  # the chip window is placed on its source grid
        if srs is None:
            srs = osr.SpatialReference(wkt=dataset.GetProjection())
            srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
            predictions = _Layer(folder / "predictions.gpkg", srs)
            references = _Layer(folder / "references.gpkg", srs)
        shift = number * CHIP_OFFSET
        x0, dx, _, y0, _, dy = dataset.GetGeoTransform()
        x0 += chip.col * dx + shift
        y0 += chip.row * dy
        for (x1, y1, x2, y2), class_id in zip(chip.boxes, chip.class_ids):
            ring = _box_ring(x0 + x1 * dx, y0 + y1 * dy, x0 + x2 * dx, y0 + y2 * dy)
            references.add(ring, names[int(class_id)], 1.0)
        source = ogr.Open(str(detected))  # must outlive its layer
        objects = source.GetLayer(0)
        for feature in objects:
            x1, x2, y1, y2 = feature.GetGeometryRef().GetEnvelope()
            ring = _box_ring(x1 + shift, y1, x2 + shift, y2)
            predictions.add(ring, feature.GetField("class_name"), feature.GetField("score"))
        found.append(objects.GetFeatureCount())
    predictions.close()
    references.close()
    return folder / "predictions.gpkg", folder / "references.gpkg", found


def evaluate_pooled(qgis_process, predictions: Path, references: Path) -> dict:
    return qgis_process.run_algorithm(
        "rsdl:evaluateobjects",
        {
            "PREDICTIONS": str(predictions),
            "REFERENCE": str(references),
            "PRED_CLASS_FIELD": "class_name",
            "REF_CLASS_FIELD": "class_name",
            "SCORE_FIELD": "score",
            "IOU_THRESHOLD": 0.5,
        },
    )["results"]


def carried_metrics(model: Path) -> dict[str, float]:
    """The training metrics the exported file carries (its spec's ``training.metrics``)."""
    import onnx

    properties = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
    return json.loads(properties["training"])["metrics"]


@pytest.mark.parametrize(
    "name, config",
    [("trees_neon", "trees_neon.yaml"), ("buildings_kampala_instances", "kampala_instances.yaml")],
)
def test_detect_and_evaluateobjects_reproduce_the_training_map(
    name, config, qgis_process, repo_root, shared_data, tmp_path
):
    model = repo_root / "models" / name / "model.onnx"
    chips, names = held_out_chips(config, shared_data, tmp_path / "cache")
    predictions, references, found = detect_held_out(qgis_process, model, chips, names, tmp_path)
    results = evaluate_pooled(qgis_process, predictions, references)
    metrics = carried_metrics(model)
    print(
        f"{name}: {len(chips)} held-out chips; rsdl:evaluateobjects AP50 {results['AP50']:.4f}, AP "
        f"{results['AP']:.4f}; training's val_map50 {metrics['val_map50']:.4f}, "
        f"val_map {metrics['val_map']:.4f}"
    )
    assert results["TP"] + results["FN"] == sum(len(chip.boxes) for chip in chips)
    assert results["TP"] + results["FP"] == sum(found)
    assert results["AP50"] == pytest.approx(metrics["val_map50"], abs=WHOLE_LOOP_TOLERANCE)
    assert results["AP"] == pytest.approx(metrics["val_map"], abs=WHOLE_LOOP_TOLERANCE)


def _mosaic(tiles: list[Path], path: Path) -> Path:
    gdal.BuildVRT(str(path), [str(t) for t in tiles]).FlushCache()
    return path


@pytest.mark.parametrize("name", ["trees_neon", "buildings_kampala_instances"])
def test_tiled_detection_agrees_with_one_whole_image_pass(
    name, qgis_process, repo_root, shared_data, tmp_path
):
    """rsdl:detect in tiles of the model's size, merged across seams, against one forward pass over
    the whole image (the exported nets take any size): the same objects, scored by
    rsdl:evaluateobjects with the whole-image pass as the reference. A trained net sees different
    context near a seam, so the agreement is high but not exact; the figures are printed.

    The R-CNN nets keep 300 region proposals and report at most 100 objects per forward pass,
    whatever its size, so one pass over an image of several tiles finds fewer objects than the
    tiled run (which has that budget per tile, as in training): the tiled run must find the objects
    of the single pass (recall), and may find more. The images hold a few tiles only."""
    if name == "trees_neon":  # 2 x 2 tiles of the crop: one pass stays under the net's 100 objects
        raster = tmp_path / "yell_512.tif"
        crop = shared_data / "deepforest_trees/2019_YELL_2_541000_4977000_image_crop.tif"
        gdal.Translate(str(raster), str(crop), srcWin=[0, 0, 512, 512])
    else:  # the held-out block at 7.5 cm: 4 x 4 tiles of 256 px
        tiles = shared_data / "fair_kampala_buildings/tiles"
        raster = _mosaic(
            [tiles / f"OAM-{x}-{y}-21.tif" for x in range(1238452, 1238456) for y in range(1046528, 1046532)],
            tmp_path / "held_out_block.vrt",
        )
    model = repo_root / "models" / name / "model.onnx"
    source = gdal.Open(str(raster))
    whole_size = max(source.RasterXSize, source.RasterYSize)
    outputs = {}
    for run, tile_size in (("tiled", None), ("whole", whole_size)):
        outputs[run] = tmp_path / f"{run}.gpkg"
        parameters = {"INPUT": str(raster), "MODEL": str(model), "OUTPUT": str(outputs[run])}
        if tile_size:
            parameters["TILE_SIZE"] = tile_size
        result = qgis_process.run_algorithm("rsdl:detect", parameters)["results"]
        assert (result["TILES"] == 1) == (run == "whole")
    agreement = qgis_process.run_algorithm(
        "rsdl:evaluateobjects",
        {
            "PREDICTIONS": str(outputs["tiled"]),
            "REFERENCE": str(outputs["whole"]),
            "PRED_CLASS_FIELD": "class_name",
            "REF_CLASS_FIELD": "class_name",
            "IOU_THRESHOLD": 0.5,
        },
    )["results"]
    print(
        f"{name}: tiled vs whole image: TP {agreement['TP']}, FP {agreement['FP']}, FN {agreement['FN']}, "
        f"recall {agreement['RECALL']:.3f}, precision {agreement['PRECISION']:.3f}"
    )
    assert agreement["TP"] > 0
    assert agreement["RECALL"] >= TILED_WHOLE_MIN_RECALL
