"""rsdl:evaluateobjects against awkward layers: invalid, multi-part, empty and NULL geometries, NULL
scores and classes, points and lines given as predictions, layers in CRSs of different units, and
10,000 objects on each side."""

from __future__ import annotations

import time

import numpy as np
import pytest
from qgis.core import (
    QgsFeature,
    QgsGeometry,
    QgsProcessingException,
    QgsVectorLayer,
)

from tests.log_feedback import LogFeedback

ALG = "rsdl:evaluateobjects"
UTM = "EPSG:32633"
X0, Y0 = 500_000.0, 4_000_000.0


class WarningLog(LogFeedback):
    def __init__(self) -> None:
        super().__init__()
        self.warnings: list[str] = []

    def pushWarning(self, warning: str) -> None:
        self.warnings.append(warning)
        super().pushWarning(warning)


def box_wkt(x1: float, y1: float, x2: float, y2: float) -> str:
    """A box in metres from (X0, Y0)."""
    a, b, c, d = X0 + x1, Y0 + y1, X0 + x2, Y0 + y2
    return f"POLYGON(({a} {b},{c} {b},{c} {d},{a} {d},{a} {b}))"


def layer(
    rows: list[tuple[str | None, list]],
    fields: str = "class_name:string&field=score:double",
    kind: str = "Polygon",
    crs: str = UTM,
) -> QgsVectorLayer:
    """A memory layer from (WKT or None, attributes) rows; WKT '' is an empty geometry."""
    result = QgsVectorLayer(f"{kind}?crs={crs}&field={fields}", "objects", "memory")
    assert result.isValid(), (kind, crs)
    features = []
    for wkt, attributes in rows:
        feature = QgsFeature(result.fields())
        if wkt is not None:
            feature.setGeometry(QgsGeometry.fromWkt(wkt) if wkt else QgsGeometry())
        feature.setAttributes(attributes)
        features.append(feature)
    added, _ = result.dataProvider().addFeatures(features)
    assert added and result.featureCount() == len(rows)
    return result


def evaluate(run_algorithm, predictions, reference, feedback=None, **extra):
    parameters = {"PREDICTIONS": predictions, "REFERENCE": reference, "OUTPUT_REPORT": None, **extra}
    return run_algorithm(ALG, parameters, feedback or WarningLog())


REFERENCE = [(box_wkt(0, 0, 10, 10), ["tree"]), (box_wkt(20, 0, 30, 10), ["tree"])]


def reference_layer(crs: str = UTM) -> QgsVectorLayer:
    return layer(REFERENCE, fields="kind:string", crs=crs)


def test_empty_and_null_geometries_are_left_out_and_counted(run_algorithm):
    predictions = layer(
        [
            (box_wkt(0, 0, 10, 10), ["tree", 0.9]),
            (None, ["tree", 0.8]),  # no geometry
            ("", ["tree", 0.7]),  # an empty geometry
            ("POLYGON EMPTY", ["tree", 0.6]),
            (box_wkt(21, 0, 31, 10), ["tree", 0.5]),
        ]
    )
    feedback = WarningLog()
    result = evaluate(run_algorithm, predictions, reference_layer(), feedback)
    assert (result["TP"], result["FP"], result["FN"]) == (2, 0, 0)
    assert any("PREDICTIONS: 3 features" in text and "left out" in text for text in feedback.warnings)


def test_null_scores_score_zero_and_null_classes_are_one_class(run_algorithm):
    predictions = layer(
        [
            (box_wkt(0, 0, 10, 10), [None, None]),  # NULL class, NULL score
            (box_wkt(0, 0, 10, 10), ["tree", None]),
            (box_wkt(20, 0, 30, 10), ["", 0.9]),  # blank class: the same as NULL
        ]
    )
    reference = layer(
        [(box_wkt(0, 0, 10, 10), ["tree"]), (box_wkt(20, 0, 30, 10), [None])], fields="kind:string"
    )
    feedback = WarningLog()
    result = evaluate(run_algorithm, predictions, reference, feedback, REF_CLASS_FIELD="kind")
    # 'tree' matches 'tree'; the NULL-class prediction at 20..30 matches the NULL-class reference;
    # the NULL-class prediction at 0..10 has no NULL reference there: a false positive.
    assert (result["TP"], result["FP"], result["FN"]) == (2, 1, 0)
    assert any("2 predictions have a NULL score" in text for text in feedback.warnings), feedback.warnings


def test_multipolygons_are_one_object_each(run_algorithm):
    two_squares = (
        f"MULTIPOLYGON((({X0} {Y0},{X0 + 10} {Y0},{X0 + 10} {Y0 + 10},{X0} {Y0 + 10},{X0} {Y0})),"
        f"(({X0 + 20} {Y0},{X0 + 30} {Y0},{X0 + 30} {Y0 + 10},{X0 + 20} {Y0 + 10},{X0 + 20} {Y0})))"
    )
    reference = layer([(two_squares, ["tree"])], fields="kind:string", kind="MultiPolygon")
    predictions = layer([(box_wkt(0, 0, 10, 10), ["tree", 0.9]), (two_squares, ["tree", 0.8])])
    result = evaluate(
        run_algorithm, predictions, reference, OUTPUT_MATCHED="memory:", OUTPUT_FALSE_POSITIVES="memory:"
    )
    # The square covers half the two-part object (IoU 0.5, a match at 0.5); the two-part prediction
    # would be a perfect match, but the object is taken: a false positive with best IoU 1.
    assert (result["TP"], result["FP"], result["FN"]) == (1, 1, 0)
    matched = [f["match_iou"] for f in result["OUTPUT_MATCHED"].getFeatures()]
    assert matched == pytest.approx([0.5])
    assert [f["best_iou"] for f in result["OUTPUT_FALSE_POSITIVES"].getFeatures()] == pytest.approx([1.0])


def test_invalid_predictions_are_repaired(run_algorithm):
    bow_tie = f"POLYGON(({X0} {Y0},{X0 + 10} {Y0 + 10},{X0 + 10} {Y0},{X0} {Y0 + 10},{X0} {Y0}))"
    spike = (  # a zero-width spike on a valid square: make-valid drops the spike
        f"POLYGON(({X0 + 20} {Y0},{X0 + 30} {Y0},{X0 + 30} {Y0 + 10},{X0 + 40} {Y0 + 10},"
        f"{X0 + 30} {Y0 + 10},{X0 + 20} {Y0 + 10},{X0 + 20} {Y0}))"
    )
    predictions = layer([(bow_tie, ["tree", 0.9]), (spike, ["tree", 0.8])])
    feedback = WarningLog()
    result = evaluate(run_algorithm, predictions, reference_layer(), feedback, OUTPUT_MATCHED="memory:")
    assert (result["TP"], result["FP"], result["FN"]) == (2, 0, 0)
    assert sorted(f["match_iou"] for f in result["OUTPUT_MATCHED"].getFeatures()) == pytest.approx([0.5, 1.0])
    assert any("PREDICTIONS: 2 invalid geometries" in text for text in feedback.warnings)


@pytest.mark.parametrize(
    "kind, wkt",
    [("Point", f"POINT({X0 + 5} {Y0 + 5})"), ("LineString", f"LINESTRING({X0} {Y0},{X0 + 10} {Y0 + 10})")],
)
def test_points_or_lines_as_predictions_are_refused(run_algorithm, kind, wkt):
    predictions = layer([(wkt, ["tree", 0.9])], kind=kind)
    with pytest.raises(QgsProcessingException) as raised:
        evaluate(run_algorithm, predictions, reference_layer())
    message = str(raised.value)
    assert f"PREDICTIONS: 'objects' is a {kind} layer" in message and "polygon layer" in message, message
    assert "OUTPUT_GEOMETRY" in message, message
    # Points as the reference are refused the same way.
    polygons = layer([(box_wkt(0, 0, 10, 10), ["tree", 0.9])])
    with pytest.raises(QgsProcessingException, match=rf"REFERENCE: 'objects' is a {kind} layer"):
        evaluate(run_algorithm, polygons, layer([(wkt, ["tree", 0.9])], kind=kind))
    assert "Traceback" not in message


def test_mixed_geometry_predictions_keep_their_polygons(run_algorithm, tmp_path):
    """A GeoPackage layer of any geometry type: points and lines are left out and counted."""
    from osgeo import ogr, osr

    path = str(tmp_path / "mixed.gpkg")
    datasource = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    table = datasource.CreateLayer("mixed", srs, ogr.wkbUnknown)
    table.CreateField(ogr.FieldDefn("score", ogr.OFTReal))
    for wkt, score in (
        (box_wkt(0, 0, 10, 10), 0.9),
        (f"POINT({X0 + 25} {Y0 + 5})", 0.8),
        (f"LINESTRING({X0 + 20} {Y0},{X0 + 30} {Y0 + 10})", 0.7),
    ):
        feature = ogr.Feature(table.GetLayerDefn())
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        feature.SetField("score", score)
        table.CreateFeature(feature)
    datasource = None
    feedback = WarningLog()
    result = evaluate(run_algorithm, path, reference_layer(), feedback)
    assert (result["TP"], result["FP"], result["FN"]) == (1, 0, 1)
    assert any("PREDICTIONS: 2 features" in text for text in feedback.warnings), feedback.warnings


FEET = "PROJ:+proj=utm +zone=33 +datum=WGS84 +units=us-ft +no_defs"


@pytest.mark.parametrize(
    "predictions_crs, reference_crs", [("EPSG:4326", UTM), (UTM, FEET), (FEET, "EPSG:3857")]
)
def test_layers_in_crss_of_different_units_agree_with_one_crs(run_algorithm, predictions_crs, reference_crs):
    """Degrees, metres, US feet and Web Mercator's stretched metres: the same figures as when both
    layers are in the UTM zone."""
    rows = [(box_wkt(0, 0, 10, 10), ["tree", 0.9]), (box_wkt(22, 0, 32, 10), ["tree", 0.8])]
    rows.append((box_wkt(1, 1, 11, 11), ["tree", 0.7]))
    same = evaluate(run_algorithm, layer(rows), reference_layer(), OUTPUT_MATCHED="memory:")
    predictions = reprojected(layer(rows), predictions_crs)
    moved = evaluate(run_algorithm, predictions, reprojected(reference_layer(), reference_crs))
    moved_matched = evaluate(
        run_algorithm, predictions, reprojected(reference_layer(), reference_crs), OUTPUT_MATCHED="memory:"
    )["OUTPUT_MATCHED"]
    for key in ("TP", "FP", "FN", "AP50", "AP"):
        assert moved[key] == pytest.approx(same[key], abs=1e-9), key
    expected = sorted(f["match_iou"] for f in same["OUTPUT_MATCHED"].getFeatures())
    assert sorted(f["match_iou"] for f in moved_matched.getFeatures()) == pytest.approx(expected, abs=1e-4)


def reprojected(source: QgsVectorLayer, crs: str) -> QgsVectorLayer:
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsProject

    target = QgsCoordinateReferenceSystem(crs)
    assert target.isValid(), crs
    transform = QgsCoordinateTransform(source.crs(), target, QgsProject.instance())
    fields = "&field=".join(
        f"{f.name()}:{'double' if f.typeName() == 'double' else 'string'}" for f in source.fields()
    )
    result = QgsVectorLayer(f"Polygon?crs={target.toWkt()}&field={fields}", "moved", "memory")
    features = []
    for feature in source.getFeatures():
        geometry = QgsGeometry(feature.geometry())
        geometry.transform(transform)
        copy = QgsFeature(result.fields())
        copy.setGeometry(geometry)
        copy.setAttributes(feature.attributes())
        features.append(copy)
    result.dataProvider().addFeatures(features)
    assert result.crs().mapUnits() == target.mapUnits()
    return result


def test_ten_thousand_objects_each_side_in_reasonable_time(run_algorithm, tmp_path):
    side = 100  # 100 x 100 reference boxes of 8 m on a 10 m grid
    rng = np.random.default_rng(3)
    reference_rows, prediction_rows = [], []
    expected_tp = 0
    for row in range(side):
        for col in range(side):
            x, y = col * 10.0, row * 10.0
            kind = ("tree", "car")[(row + col) % 2]
            reference_rows.append((box_wkt(x, y, x + 8, y + 8), [kind]))
            shift = float(rng.uniform(0, 4))  # IoU (8 - s) / (8 + s) * ... >= 0.5 when s < 2.67
            iou = (8 - shift) * 8 / (2 * 64 - (8 - shift) * 8)
            expected_tp += iou >= 0.5
            prediction_rows.append(
                (box_wkt(x + shift, y, x + shift + 8, y + 8), [kind, float(rng.uniform())])
            )
    reference = layer(reference_rows, fields="kind:string")
    predictions = layer(prediction_rows)
    started = time.perf_counter()
    result = evaluate(
        run_algorithm,
        predictions,
        reference,
        REF_CLASS_FIELD="kind",
        OUTPUT_REPORT=str(tmp_path / "report.html"),
        OUTPUT_MATCHED="memory:",
        OUTPUT_FALSE_POSITIVES="memory:",
        OUTPUT_MISSED="memory:",
    )
    elapsed = time.perf_counter() - started
    print(f"10,000 x 10,000 objects: {elapsed:.1f} s")
    assert result["TP"] == expected_tp and result["FP"] == result["FN"] == side * side - expected_tp
    assert elapsed < 120
