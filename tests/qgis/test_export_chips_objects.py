"""rsdl:exportchips MODE objects in QGIS (pytest-qgis): COCO, YOLO and Pascal VOC chips of real
labels, read back and moved to map coordinates with each chip GeoTIFF's own geotransform (GDAL),
against the source features clipped to the chip with OGR."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from osgeo import gdal, ogr, osr
from qgis.core import QgsProcessingException

from rsdl_qgis_plugin.core.datasets.chip_folder import load_dataset_document
from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries
from tests.rasters import write_geotiff

ALG = "rsdl:exportchips"
OBJECTS = 3
COCO, YOLO, VOC = 0, 1, 2
YELL = "deepforest_trees/2019_YELL_2_541000_4977000_image_crop"
KAMPALA = "fair_kampala_buildings"
# 400 px chips overlapping by 100 px: boxes cut by chip edges, seen in several chips.
YELL_CHIPS = {"CHIP_SIZE": 400, "STRIDE": 300, "VAL_FRACTION": 0.0, "FIELD": "label"}
MIN_VISIBLE = 0.5


def run_objects(run, image: Path, labels: Path | str, output: Path, **parameters: Any) -> dict[str, Any]:
    return run(
        ALG,
        {"INPUT": str(image), "LABELS": [str(labels)], "MODE": OBJECTS, "OUTPUT": str(output), **parameters},
    )


def chip_grid(path: Path) -> tuple[tuple[float, ...], int]:
    """The chip GeoTIFF's geotransform and size, read with GDAL."""
    dataset = gdal.Open(str(path))
    assert dataset.RasterXSize == dataset.RasterYSize
    return dataset.GetGeoTransform(), dataset.RasterXSize


def to_map(geotransform: tuple[float, ...], xy: np.ndarray) -> np.ndarray:
    x0, dx, _, y0, _, dy = geotransform
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    return np.column_stack([x0 + xy[:, 0] * dx, y0 + xy[:, 1] * dy])


def box_to_map(
    geotransform: tuple[float, ...], x1: float, y1: float, x2: float, y2: float
) -> tuple[float, ...]:
    (ax, ay), (bx, by) = to_map(geotransform, [[x1, y1], [x2, y2]])
    return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)


def chip_rect(geotransform: tuple[float, ...], size: int) -> tuple[float, ...]:
    return box_to_map(geotransform, 0, 0, size, size)


def rect_polygon(xmin: float, ymin: float, xmax: float, ymax: float) -> ogr.Geometry:
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in ((xmin, ymin), (xmax, ymin), (xmax, ymax), (xmin, ymax), (xmin, ymin)):
        ring.AddPoint_2D(x, y)
    polygon = ogr.Geometry(ogr.wkbPolygon)
    polygon.AddGeometry(ring)
    return polygon


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def source_boxes(gpkg: Path) -> list[tuple[float, ...]]:
    """The source tree boxes in map coordinates (OGR envelopes)."""
    datasource = ogr.Open(str(gpkg))
    boxes = []
    for feature in datasource.GetLayer(0):
        xmin, xmax, ymin, ymax = feature.GetGeometryRef().GetEnvelope()
        boxes.append((xmin, ymin, xmax, ymax))
    return boxes


def expected_boxes(
    boxes: list[tuple[float, ...]], rect: tuple[float, ...], min_visible: float
) -> tuple[list[tuple[float, ...]], list[tuple[float, ...]]]:
    """Source boxes clipped to the chip that are visible enough, and those near the threshold."""
    kept, borderline = [], []
    for box in boxes:
        clipped = (max(box[0], rect[0]), max(box[1], rect[1]), min(box[2], rect[2]), min(box[3], rect[3]))
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            continue
        fraction = (
            (clipped[2] - clipped[0]) * (clipped[3] - clipped[1]) / ((box[2] - box[0]) * (box[3] - box[1]))
        )
        if abs(fraction - min_visible) < 1e-6:
            borderline.append(clipped)
        elif fraction >= min_visible:
            kept.append(clipped)
    return kept, borderline


def coco_chips(folder: Path) -> dict[Path, list[dict[str, Any]]]:
    """Every chip of every split with its COCO annotations."""
    chips: dict[Path, list[dict[str, Any]]] = {}
    for path in sorted(folder.glob("*/annotations.json")):
        document = json.loads(path.read_text())
        by_image: dict[int, list[dict[str, Any]]] = {image["id"]: [] for image in document["images"]}
        for annotation in document["annotations"]:
            by_image[annotation["image_id"]].append(annotation)
        for image in document["images"]:
            chips[path.parent / image["file_name"]] = by_image[image["id"]]
    return chips


def match_boxes(
    written: list[tuple[float, ...]], expected: list[tuple[float, ...]], borderline: list
) -> list[float]:
    """Each expected box's IoU with its best written box; every written box is expected."""
    ious = [max((box_iou(e, w) for w in written), default=0.0) for e in expected]
    assert len(expected) <= len(written) <= len(expected) + len(borderline)
    return ious


@pytest.fixture(scope="module")
def yell_coco(run_processing, shared_data, tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    output = tmp_path_factory.mktemp("yell_coco") / "chips"
    result = run_objects(
        run_processing, shared_data / f"{YELL}.tif", shared_data / f"{YELL}_boxes.gpkg", output, **YELL_CHIPS
    )
    return output, result


def test_coco_round_trip_reproduces_the_source_boxes(yell_coco, shared_data):
    folder, result = yell_coco
    boxes = source_boxes(shared_data / f"{YELL}_boxes.gpkg")
    assert len(boxes) == 279
    chips = coco_chips(folder)
    counts = json.loads(result["CHIP_COUNTS"])
    assert len(chips) == counts["total"] == 16  # 4 x 4 chips, none empty
    ious, clipped, whole, dropped = [], 0, set(), 0
    for chip_path, records in chips.items():
        geotransform, size = chip_grid(chip_path)
        rect = chip_rect(geotransform, size)
        written = []
        for annotation in records:
            x, y, w, h = annotation["bbox"]
            assert annotation["iscrowd"] == 0 and annotation["category_id"] == 1
            assert x >= 0 and y >= 0 and x + w <= size + 1e-9 and y + h <= size + 1e-9
            assert annotation["area"] == pytest.approx(w * h, rel=1e-3)  # boxes: polygon area = box area
            written.append(box_to_map(geotransform, x, y, x + w, y + h))
        expected, borderline = expected_boxes(boxes, rect, MIN_VISIBLE)
        ious += match_boxes(written, expected, borderline)
        whole.update(box for box in boxes if box in expected)  # clipping left it unchanged
        clipped += sum(1 for e in expected if e not in boxes)
        dropped += len(expected_boxes(boxes, rect, 0.0)[0]) - len(expected) - len(borderline)
    assert min(ious) > 0.99
    assert len(whole) > 250  # nearly every box is whole in some chip and found there
    assert clipped > 20 and dropped > 20  # both rules were exercised
    objects = json.loads(result["OBJECT_COUNTS"])
    assert objects["train"] == {"Tree": sum(len(a) for a in chips.values())}
    assert objects["dropped_mostly_outside"] > 0
    print(f"YELL COCO: {len(chips)} chips, {objects['total']} objects, min IoU {min(ious):.5f}")


def test_coco_file_is_valid_coco(yell_coco):
    pycocotools = pytest.importorskip("pycocotools.coco")
    folder, _ = yell_coco
    coco = pycocotools.COCO(str(folder / "train" / "annotations.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["Tree"]
    for annotation in coco.loadAnns(coco.getAnnIds())[:50]:
        mask = coco.annToMask(annotation)
        # Integer boxes rasterize to exactly their pixels.
        assert mask.sum() == pytest.approx(annotation["area"], abs=1)
        assert mask.shape == (400, 400)


def test_dataset_json_and_index_describe_object_chips(yell_coco):
    folder, result = yell_coco
    document = load_dataset_document(folder)
    assert document["mode"] == "objects"
    objects = document["objects"]
    assert objects["format"] == "coco" and objects["min_visible_fraction"] == MIN_VISIBLE
    assert objects["classes"] == [
        {"value": 1, "name": "Tree", "color": objects["classes"][0]["color"], "yolo_index": 0}
    ]
    assert objects["counts"] == json.loads(result["OBJECT_COUNTS"])
    assert not list(folder.glob("*/masks"))
    datasource = ogr.Open(str(folder / "index.gpkg"))
    layer = datasource.GetLayerByName("chips")
    per_chip = {f.GetField("image"): f.GetField("objects") for f in layer}
    datasource = None
    records = coco_chips(folder)
    assert per_chip == {p.relative_to(folder).as_posix(): len(a) for p, a in records.items()}


def test_yolo_round_trip_reproduces_the_source_boxes(run_algorithm, shared_data, tmp_path):
    output = tmp_path / "yolo"
    result = run_objects(
        run_algorithm,
        shared_data / f"{YELL}.tif",
        shared_data / f"{YELL}_boxes.gpkg",
        output,
        OBJECT_FORMAT=YOLO,
        **YELL_CHIPS,
    )
    boxes = source_boxes(shared_data / f"{YELL}_boxes.gpkg")
    images = sorted(output.glob("train/images/*.tif"))
    assert len(images) == 16
    assert sorted(p.stem for p in output.glob("train/labels/*.txt")) == [p.stem for p in images]
    ious, total = [], 0
    for image in images:
        geotransform, size = chip_grid(image)
        written = []
        for line in (output / "train" / "labels" / f"{image.stem}.txt").read_text().splitlines():
            index, cx, cy, w, h = line.split()
            assert index == "0"
            cx, cy, w, h = (float(v) * size for v in (cx, cy, w, h))
            written.append(box_to_map(geotransform, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        total += len(written)
        expected, borderline = expected_boxes(boxes, chip_rect(geotransform, size), MIN_VISIBLE)
        ious += match_boxes(written, expected, borderline)
    assert min(ious) > 0.99  # 6 decimals of a 400 px chip: 0.0004 px
    assert total == json.loads(result["OBJECT_COUNTS"])["total"]
    data = (output / "data.yaml").read_text()
    assert "train: train/images" in data and 'names:\n  0: "Tree"' in data and "val:" not in data
    assert not list(output.glob("*/annotations.json"))


def test_voc_boxes_equal_the_coco_boxes(run_algorithm, yell_coco, shared_data, tmp_path):
    output = tmp_path / "voc"
    run_objects(
        run_algorithm,
        shared_data / f"{YELL}.tif",
        shared_data / f"{YELL}_boxes.gpkg",
        output,
        OBJECT_FORMAT=VOC,
        **YELL_CHIPS,
    )
    coco = coco_chips(yell_coco[0])
    boxes = source_boxes(shared_data / f"{YELL}_boxes.gpkg")
    for image, records in coco.items():
        root = ElementTree.parse(output / "train" / "annotations" / f"{image.stem}.xml").getroot()
        assert root.findtext("filename") == image.name and root.findtext("size/depth") == "3"
        voc = sorted(
            tuple(float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            for obj in root.iter("object")
        )
        assert {obj.findtext("name") for obj in root.iter("object")} <= {"Tree"}
        expected = sorted((x, y, x + w, y + h) for x, y, w, h in (a["bbox"] for a in records))
        assert np.allclose(voc, expected, atol=1e-3)
        # Truncated: the box is not a whole source box.
        geotransform, _ = chip_grid(image)
        for obj in root.iter("object"):
            box = box_to_map(
                geotransform, *(float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            )
            whole = max(box_iou(box, source) for source in boxes) > 0.999
            assert obj.findtext("truncated") == ("0" if whole else "1")


@pytest.fixture(scope="module")
def kampala_mosaic(shared_data, tmp_path_factory) -> Path:
    """The zoom-21 Kampala tiles as one raster (a VRT of the tiles)."""
    tiles = sorted(str(p) for p in (shared_data / KAMPALA / "tiles").glob("*-21.tif"))
    path = tmp_path_factory.mktemp("kampala") / "mosaic.vrt"
    gdal.BuildVRT(str(path), tiles)
    return path


def source_polygons(geojson: Path, epsg: int) -> list[ogr.Geometry]:
    """The building polygons in the image's CRS, repaired (OGR/GEOS make-valid)."""
    target = osr.SpatialReference()
    target.ImportFromEPSG(epsg)
    target.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    datasource = ogr.Open(str(geojson))
    layer = datasource.GetLayer(0)
    source = layer.GetSpatialRef()
    source.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    transform = osr.CoordinateTransformation(source, target)
    polygons = []
    for feature in layer:
        geometry = feature.GetGeometryRef().Clone()
        geometry.Transform(transform)
        if not geometry.IsValid():
            geometry = geometry.MakeValid()
        polygons.append(geometry)
    return polygons


def test_kampala_coco_polygons_round_trip(run_algorithm, kampala_mosaic, shared_data, tmp_path):
    output = tmp_path / "kampala"
    result = run_objects(
        run_algorithm,
        kampala_mosaic,
        shared_data / KAMPALA / "buildings.geojson",
        output,
        CHIP_SIZE=256,
        STRIDE=192,
        SPLIT_BLOCK=768,
        VAL_FRACTION=0.25,
        SEED=3,
    )
    polygons = source_polygons(shared_data / KAMPALA / "buildings.geojson", 3857)
    chips = coco_chips(output)
    assert {p.parent.parent.name for p in chips} == {"train", "val"}
    ious, area_errors, objects, truncated = [], [], 0, 0
    for chip_path, records in chips.items():
        geotransform, size = chip_grid(chip_path)
        rect = rect_polygon(*chip_rect(geotransform, size))
        expected = []
        for polygon in polygons:
            clipped = polygon.Intersection(rect)
            if clipped is not None and clipped.GetArea() > 0:
                fraction = clipped.GetArea() / polygon.GetArea()
                if abs(fraction - MIN_VISIBLE) > 1e-3 and fraction >= MIN_VISIBLE:
                    expected.append((clipped, fraction))
        pixel_area = abs(geotransform[1] * geotransform[5])
        written = []
        for annotation in records:
            geometry = ogr.Geometry(ogr.wkbMultiPolygon)
            for flat in annotation["segmentation"]:
                ring = ogr.Geometry(ogr.wkbLinearRing)
                for x, y in to_map(geotransform, np.reshape(flat, (-1, 2))):
                    ring.AddPoint_2D(float(x), float(y))
                ring.CloseRings()
                polygon = ogr.Geometry(ogr.wkbPolygon)
                polygon.AddGeometry(ring)
                geometry = geometry.Union(polygon.MakeValid())
            written.append((geometry, annotation["area"] * pixel_area))
        assert len(written) == len(expected)
        for clipped, fraction in expected:
            best = max(written, key=lambda w: w[0].Intersection(clipped).GetArea())
            iou = best[0].Intersection(clipped).GetArea() / best[0].Union(clipped).GetArea()
            ious.append(iou)
            area_errors.append(abs(best[1] - clipped.GetArea()) / clipped.GetArea())
            truncated += fraction < 1
        objects += len(written)
    assert objects > 100 and truncated > 10
    assert min(ious) > 0.99 and max(area_errors) < 0.01
    counts = json.loads(result["OBJECT_COUNTS"])
    assert counts["total"] == objects
    print(f"Kampala COCO: {len(chips)} chips, {objects} objects, min IoU {min(ious):.5f}")
    print(f"Kampala COCO: max area error {max(area_errors):.2e}")


def test_object_chips_follow_the_segmentation_split(run_algorithm, kampala_mosaic, shared_data, tmp_path):
    """Same plan, split and nodata rules: with every chip kept, the same chips in the same splits."""
    common = {
        "CHIP_SIZE": 256,
        "STRIDE": 192,
        "SPLIT_BLOCK": 768,
        "VAL_FRACTION": 0.25,
        "SEED": 3,
        "BURN_VALUE": 1,
    }
    labels = shared_data / KAMPALA / "buildings.geojson"
    run_objects(run_algorithm, kampala_mosaic, labels, tmp_path / "objects", **common)
    run_algorithm(
        ALG,
        {
            "INPUT": str(kampala_mosaic),
            "LABELS": [str(labels)],
            "MODE": 0,
            "OUTPUT": str(tmp_path / "masks"),
            **common,
        },
    )
    objects = sorted(
        p.relative_to(tmp_path / "objects").as_posix() for p in (tmp_path / "objects").glob("*/images/*.tif")
    )
    masks = sorted(
        p.relative_to(tmp_path / "masks").as_posix() for p in (tmp_path / "masks").glob("*/images/*.tif")
    )
    assert objects == masks and len(objects) > 20


def hand_made_case(folder: Path) -> tuple[Path, Path]:
    """A 100 x 100 px image of 1 m pixels (4 chips of 50 px) and three boxes, in pixels:
    A (10..20, 10..20) inside chip r0_c0; B (40..55, 10..20): 2/3 in r0_c0, 1/3 in r0_c50;
    C (45..55, 60..70): half in r50_c0, half in r50_c50."""
    image = write_geotiff(
        folder / "image.tif",
        np.full((1, 100, 100), 7, np.uint8),
        (500000.0, 1.0, 0.0, 6000100.0, 0.0, -1.0),
        32633,
    )
    labels = folder / "boxes.gpkg"
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    datasource = ogr.GetDriverByName("GPKG").CreateDataSource(str(labels))
    layer = datasource.CreateLayer("boxes", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("name", ogr.OFTString))
    for name, (c1, r1, c2, r2) in {
        "A": (10, 10, 20, 20),
        "B": (40, 10, 55, 20),
        "C": (45, 60, 55, 70),
    }.items():
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("name", name)
        feature.SetGeometry(rect_polygon(500000 + c1, 6000100 - r2, 500000 + c2, 6000100 - r1))
        layer.CreateFeature(feature)
        feature = None
    layer = datasource = None
    return image, labels


@pytest.mark.parametrize(
    ("min_visible", "expected", "left_out"),
    [
        # chip -> boxes (x1, y1, x2, y2) in chip pixels; objects left out of written chips
        (
            0.5,
            {
                "r000000_c000000": [(10, 10, 20, 20), (40, 10, 50, 20)],
                "r000050_c000000": [(45, 10, 50, 20)],
                "r000050_c000050": [(0, 10, 5, 20)],
            },
            0,  # B's third in r000000_c000050, but that chip is empty and dropped
        ),
        (
            0.3,
            {
                "r000000_c000000": [(10, 10, 20, 20), (40, 10, 50, 20)],
                "r000000_c000050": [(0, 10, 5, 20)],
                "r000050_c000000": [(45, 10, 50, 20)],
                "r000050_c000050": [(0, 10, 5, 20)],
            },
            0,
        ),
        (0.7, {"r000000_c000000": [(10, 10, 20, 20)]}, 1),  # B's two thirds
        (1.0, {"r000000_c000000": [(10, 10, 20, 20)]}, 1),
    ],
)
def test_visibility_threshold_on_a_hand_made_case(run_algorithm, tmp_path, min_visible, expected, left_out):
    image, labels = hand_made_case(tmp_path)
    output = tmp_path / "chips"
    result = run_objects(
        run_algorithm,
        image,
        labels,
        output,
        CHIP_SIZE=50,
        SPLIT_BLOCK=100,
        VAL_FRACTION=0.0,
        KEEP_EMPTY=0.0,
        MIN_VISIBLE_FRACTION=min_visible,
    )
    chips = coco_chips(output)
    got = {
        path.stem: sorted(tuple(np.add(a["bbox"], [0, 0, *a["bbox"][:2]])) for a in records)
        for path, records in chips.items()
    }
    assert got == {chip: sorted(boxes) for chip, boxes in expected.items()}  # empty chips dropped
    counts = json.loads(result["OBJECT_COUNTS"])
    assert counts["total"] == sum(len(b) for b in expected.values())
    assert counts["dropped_mostly_outside"] == left_out
    assert json.loads(result["CHIP_COUNTS"])["dropped_empty"] == 4 - len(expected)


def test_objects_need_vector_labels(run_algorithm, shared_data, tmp_path):
    image = shared_data / f"{YELL}.tif"
    with pytest.raises(QgsProcessingException, match="MODE objects needs vector LABELS"):
        run_algorithm(
            ALG, {"INPUT": str(image), "MASK": str(image), "MODE": OBJECTS, "OUTPUT": str(tmp_path / "c")}
        )
    with pytest.raises(QgsProcessingException, match="MIN_VISIBLE_FRACTION"):
        run_objects(
            run_algorithm, image, shared_data / f"{YELL}_boxes.gpkg", tmp_path / "c", MIN_VISIBLE_FRACTION=1.5
        )
    assert list(tmp_path.iterdir()) == [] and leftover_temporaries(tmp_path) == []
