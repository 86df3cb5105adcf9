"""rsdl:segment in QGIS (pytest-qgis): oracles, the peer's models, grids, outputs and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from osgeo import gdal, ogr, osr
from qgis.core import (
    QgsPalettedRasterRenderer,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsRasterLayer,
)
from scipy import ndimage

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec
from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries
from tests.cancel_feedback import CancelAt
from tests.rasterize_cases import read_band, read_category_names

ALG = "rsdl:segment"
RADIUS = 2  # receptive radius of the generated test models


def whole_image_probabilities(model: Path, image: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """One onnxruntime pass over the whole image, reflect-padded as the engine pads tiles."""
    padded = np.pad(image.astype(np.float32), ((0, 0), (RADIUS, RADIUS), (RADIUS, RADIUS)), mode="reflect")
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    output = session.run(None, {session.get_inputs()[0].name: spec.normalize(padded[None])})[0][0]
    return output[:, RADIUS:-RADIUS, RADIUS:-RADIUS]


def test_classes_and_confidence_equal_a_whole_image_pass(sample_scene, test_models, run_algorithm, tmp_path):
    scene = sample_scene / "scene.tif"
    output, confidence = tmp_path / "classes.tif", tmp_path / "confidence.tif"
    result = run_algorithm(
        ALG,
        {
            "INPUT": str(scene),
            "MODEL": str(test_models["fcn_seg.onnx"]),
            "MERGE": 3,  # centre-crop: exact where the overlap covers the receptive field
            "OVERLAP": 25,
            "OUTPUT": str(output),
            "CONFIDENCE": str(confidence),
        },
    )
    assert result["EXECUTION_PROVIDER"] == "CPUExecutionProvider"
    image = gdal.Open(str(scene)).ReadAsArray()
    spec = ModelSpec.from_metadata(
        onnxruntime.InferenceSession(str(test_models["fcn_seg.onnx"])).get_modelmeta().custom_metadata_map
    )
    probabilities = whole_image_probabilities(test_models["fcn_seg.onnx"], image, spec)
    classes = read_band(output)
    assert classes.shape == image.shape[1:]
    agreement = (classes == probabilities.argmax(axis=0)).mean()
    assert agreement > 0.9999, agreement  # only exact ties may differ
    np.testing.assert_allclose(read_band(confidence), probabilities.max(axis=0), atol=1e-5)
    assert len(np.unique(classes)) == 3  # the test is not vacuous: all classes occur
    dataset = gdal.Open(str(output))
    assert dataset.GetGeoTransform() == gdal.Open(str(scene)).GetGeoTransform()
    assert read_category_names(output)[:3] == ["background", "building", "water"]
    layer = QgsRasterLayer(str(output), "classes", "gdal")
    assert layer.loadNamedStyle(str(output.with_suffix(".qml")))[1]
    assert isinstance(layer.renderer(), QgsPalettedRasterRenderer)
    assert [c.label for c in layer.renderer().classes()] == ["background", "building", "water"]


def test_torchscript_gives_the_onnx_result(sample_scene, test_models, run_algorithm, tmp_path):
    if "fcn_seg.pt" not in test_models:
        pytest.fail("torch is part of the test environment; the TorchScript model must exist")
    common = {"INPUT": str(sample_scene / "scene.tif"), "MERGE": 0}
    run_algorithm(
        ALG, {**common, "MODEL": str(test_models["fcn_seg.onnx"]), "OUTPUT": str(tmp_path / "a.tif")}
    )
    run_algorithm(ALG, {**common, "MODEL": str(test_models["fcn_seg.pt"]), "OUTPUT": str(tmp_path / "b.tif")})
    assert (read_band(tmp_path / "a.tif") == read_band(tmp_path / "b.tif")).mean() > 0.9999


def test_regression_values_are_not_truncated(sample_scene, test_models, run_algorithm, tmp_path):
    output = tmp_path / "values.tif"
    run_algorithm(
        ALG,
        {
            "INPUT": str(sample_scene / "scene.tif"),
            "MODEL": str(test_models["fcn_regressor.onnx"]),
            "MERGE": 3,
            "OUTPUT": str(output),
        },
    )
    dataset = gdal.Open(str(output))
    assert dataset.GetRasterBand(1).DataType == gdal.GDT_Float32
    values = dataset.ReadAsArray()
    image = gdal.Open(str(sample_scene / "scene.tif")).ReadAsArray()
    spec = ModelSpec.from_metadata(
        onnxruntime.InferenceSession(str(test_models["fcn_regressor.onnx"]))
        .get_modelmeta()
        .custom_metadata_map
    )
    expected = whole_image_probabilities(test_models["fcn_regressor.onnx"], image, spec)[0]
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-4)
    assert values.min() < 0.0 or values.max() > 1.0
    assert not np.allclose(values, np.round(values))


def test_two_heads_write_two_outputs(sample_scene, test_models, run_algorithm, tmp_path):
    output = tmp_path / "heads.tif"
    result = run_algorithm(
        ALG,
        {
            "INPUT": str(sample_scene / "scene.tif"),
            "MODEL": str(test_models["fcn_two_heads.onnx"]),
            "OUTPUT": str(output),
        },
    )
    second = Path(json.loads(result["HEAD_OUTPUTS"])[0])
    assert second == tmp_path / "heads_head2.tif"
    assert read_category_names(second)[:2] == ["background", "tree"]
    assert set(np.unique(read_band(second))) <= {0, 1}


def _count_components(classes: np.ndarray, skip: set[int]) -> int:
    """8-connected regions per class (scipy), the oracle for dissolved polygons."""
    structure = np.ones((3, 3), dtype=bool)
    return sum(
        ndimage.label(classes == value, structure=structure)[1]
        for value in np.unique(classes)
        if value not in skip
    )


def test_polygons_are_dissolved_across_tile_seams(sample_scene, test_models, run_algorithm, tmp_path):
    output, polygons = tmp_path / "classes.tif", tmp_path / "polygons.gpkg"
    run_algorithm(
        ALG,
        {
            "INPUT": str(sample_scene / "scene.tif"),
            "MODEL": str(test_models["fcn_seg.onnx"]),
            "OUTPUT": str(output),
            "OUTPUT_POLYGONS": str(polygons),
        },
    )
    classes = read_band(output)
    datasource = ogr.Open(str(polygons))
    layer = datasource.GetLayer(0)
    features = list(layer)
    assert len(features) == _count_components(classes, skip={0})
    names = {f.GetField("class_name") for f in features}
    assert names == {"building", "water"}
    confidences = np.array([f.GetField("mean_confidence") for f in features])
    assert ((confidences > 0) & (confidences <= 1)).all()
    # Total polygon area equals the pixels of those classes.
    pixel_area = 0.5 * 0.5
    assert sum(f.GetGeometryRef().GetArea() for f in features) == pytest.approx(
        (classes > 0).sum() * pixel_area
    )


DEEPNESS_MODELS = sorted(
    str(p.relative_to(Path(__file__).resolve().parents[3] / "shared/data/deepness_peer/models"))
    for folder in ("dummy_segmentation_models", "dummy_regression_models")
    for p in (Path(__file__).resolve().parents[3] / "shared/data/deepness_peer/models" / folder).glob(
        "*.onnx"
    )
)


@pytest.mark.parametrize("model", DEEPNESS_MODELS or ["missing"])
def test_deepness_models_run_on_the_orthophoto(model, shared_data, run_algorithm, tmp_path):
    path = shared_data / "deepness_peer/models" / model
    output = tmp_path / "out.tif"
    feedback = QgsProcessingFeedback()
    result = run_algorithm(
        ALG,
        {
            "INPUT": str(shared_data / "deepness_peer/dummy_fotomap_small.tif"),
            "MODEL": str(path),
            "OUTPUT": str(output),
        },
        feedback,
    )
    spec = ModelSpec.from_metadata(
        onnxruntime.InferenceSession(str(path)).get_modelmeta().custom_metadata_map
    )
    dataset = gdal.Open(str(output))
    assert dataset.GetProjection()
    heads = [output, *map(Path, json.loads(result["HEAD_OUTPUTS"]))]
    session = onnxruntime.InferenceSession(str(path))
    assert len(heads) == len(session.get_outputs())
    if spec.model_type.value == "Regressor":
        band = dataset.GetRasterBand(1)
        assert band.DataType == gdal.GDT_Float32
        values = band.ReadAsArray()
        assert np.isfinite(values).any()
        assert not np.allclose(values[np.isfinite(values)], np.round(values[np.isfinite(values)]))
        return
    for head, head_path in enumerate(heads):
        names = read_category_names(head_path)
        for value, name in spec.head_class_names[head].items() if head < len(spec.head_class_names) else []:
            channels = session.get_outputs()[head].shape
            index = value + 1 if len(channels) == 3 or channels[1] == 1 else value
            assert names[index] == name, (head, names[:4])


def deepness_classes(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """Deepness's MapProcessorSegmentation._process_tile for a multi-channel output, restated:
    every channel below the threshold is set to 0, then the argmax over the channels."""
    zeroed = probabilities.copy()
    zeroed[zeroed < threshold] = 0.0
    return zeroed.argmax(axis=0)


def test_a_carried_seg_thresh_classifies_as_deepness_does(shared_data, run_algorithm, tmp_path):
    onnx = pytest.importorskip("onnx", reason="writes a copy of the peer's model with seg_thresh")
    bare = shared_data / "deepness_peer/models/dummy_segmentation_models/dummy_model.onnx"
    model = onnx.load(str(bare))
    assert not model.metadata_props  # the peer ships it bare: rsdl's default is a plain argmax
    onnx.helper.set_model_props(model, {"seg_thresh": "0.5"})
    with_key = tmp_path / "dummy_model_seg_thresh.onnx"
    onnx.save(model, str(with_key))
    raster = shared_data / "deepness_peer/dummy_fotomap_small.tif"
    outputs = {}
    for name, path in (("with", with_key), ("without", bare)):
        outputs[name] = tmp_path / f"{name}.tif"
        run_algorithm(
            ALG,
            {
                "INPUT": str(raster),
                "MODEL": str(path),
                "OVERLAP": 0,
                "MERGE": 3,
                "OUTPUT": str(outputs[name]),
            },
        )

    # The oracle: onnxruntime over the image's own 512 px tiles (zero-padded at the edges), the
    # first three bands scaled by 1/255 as the model's missing metadata says, then Deepness's rule.
    dataset = gdal.Open(str(raster))
    image = dataset.ReadAsArray()[:3].astype(np.float32) / np.float32(255.0)
    valid = dataset.GetRasterBand(1).GetMaskBand().ReadAsArray() > 0  # the alpha band
    rows, cols = image.shape[1:]
    padded = np.zeros((3, -(-rows // 512) * 512, -(-cols // 512) * 512), dtype=np.float32)
    padded[:, :rows, :cols] = image
    session = onnxruntime.InferenceSession(str(with_key), providers=["CPUExecutionProvider"])
    probabilities = np.zeros_like(padded)
    for row in range(0, padded.shape[1], 512):
        for col in range(0, padded.shape[2], 512):
            tile = padded[None, :, row : row + 512, col : col + 512]
            probabilities[:, row : row + 512, col : col + 512] = session.run(
                None, {"input_rgb_512x512": tile}
            )[0][0]
    probabilities = probabilities[:, :rows, :cols]
    deepness = deepness_classes(probabilities, 0.5)[valid]
    argmax = probabilities.argmax(axis=0)[valid]
    with_threshold, without = read_band(outputs["with"])[valid], read_band(outputs["without"])[valid]

    agreement = (with_threshold == deepness).mean()
    assert agreement >= 0.999, agreement
    # Without the key rsdl keeps its plain argmax, which is far from Deepness's rule here.
    assert (without == argmax).mean() >= 0.999
    assert (without == deepness).mean() < 0.5
    assert len(np.unique(deepness)) == 3  # not vacuous: the fallback and the argmax both occur


def _resolution(path: Path) -> tuple[float, float]:
    geotransform = gdal.Open(str(path)).GetGeoTransform()
    return geotransform[1], geotransform[5]


def test_epsg3857_tile_at_native_and_model_resolution(shared_data, test_models, run_algorithm, tmp_path):
    tile = shared_data / "fair_kampala_buildings/tiles/OAM-1238449-1046530-21.tif"
    native, resampled = tmp_path / "native.tif", tmp_path / "resampled.tif"
    common = {"INPUT": str(tile), "MODEL": str(test_models["fcn_seg.onnx"])}
    run_algorithm(ALG, {**common, "RESAMPLE": False, "OUTPUT": str(native)})
    source = gdal.Open(str(tile))
    assert gdal.Open(str(native)).GetGeoTransform() == source.GetGeoTransform()
    run_algorithm(ALG, {**common, "RESAMPLE": True, "OUTPUT": str(resampled)})
    result = gdal.Open(str(resampled))
    assert _resolution(resampled) == pytest.approx((0.5, -0.5))  # the model's 50 cm
    assert result.GetGeoTransform()[0] == pytest.approx(source.GetGeoTransform()[0])
    assert result.GetGeoTransform()[3] == pytest.approx(source.GetGeoTransform()[3])
    for path in (native, resampled):
        srs = osr.SpatialReference(wkt=gdal.Open(str(path)).GetProjection())
        assert srs.GetAuthorityCode(None) == "3857"


def test_utm_single_band_uint16_with_band_mapping(shared_data, test_models, run_algorithm, tmp_path):
    image = shared_data / "solaris_atlanta/sample_geotiff.tif"
    output = tmp_path / "utm.tif"
    feedback = QgsProcessingFeedback()
    run_algorithm(
        ALG,
        {
            "INPUT": str(image),
            "MODEL": str(test_models["fcn_seg.onnx"]),
            "BANDS": [1, 1, 1],
            "OUTPUT": str(output),
        },
        feedback,
    )
    assert gdal.Open(str(output)).GetGeoTransform() == gdal.Open(str(image)).GetGeoTransform()
    assert "max_pixel_value" in feedback.textLog() or "255" in feedback.textLog()  # a 16-bit warning


def test_custom_crs_without_epsg(sample_scene, test_models, run_algorithm, tmp_path):
    custom = tmp_path / "custom.tif"
    source = gdal.Open(str(sample_scene / "scene.tif"))
    srs = osr.SpatialReference()
    srs.ImportFromProj4(
        "+proj=tmerc +lat_0=0 +lon_0=32.5 +k=0.9999 +x_0=450000 +y_0=0 +ellps=GRS80 +units=m +no_defs"
    )
    copy = gdal.GetDriverByName("GTiff").CreateCopy(str(custom), source)
    copy.SetProjection(srs.ExportToWkt())
    copy = None
    output = tmp_path / "out.tif"
    run_algorithm(
        ALG, {"INPUT": str(custom), "MODEL": str(test_models["fcn_seg.onnx"]), "OUTPUT": str(output)}
    )
    written = osr.SpatialReference(wkt=gdal.Open(str(output)).GetProjection())
    assert written.IsSame(srs)
    assert gdal.Open(str(output)).GetGeoTransform() == source.GetGeoTransform()


def test_sentinel2_ten_band_uint16_grid(shared_data, test_models, run_algorithm, tmp_path):
    mosaic = shared_data / "rsgislib_aber_s2/sen2_20210527_aber_mosaic.vrt"
    output = tmp_path / "s2.tif"
    run_algorithm(
        ALG,
        {
            "INPUT": str(mosaic),
            "MODEL": str(test_models["fcn_seg.onnx"]),
            "BANDS": [3, 2, 1],
            "RESAMPLE": False,
            "OUTPUT": str(output),
        },
    )
    result, source = gdal.Open(str(output)), gdal.Open(str(mosaic))
    assert (result.RasterXSize, result.RasterYSize) == (source.RasterXSize, source.RasterYSize)
    assert result.GetGeoTransform() == source.GetGeoTransform()
    assert osr.SpatialReference(wkt=result.GetProjection()).IsSame(
        osr.SpatialReference(wkt=source.GetProjection())
    )
    # The mosaic declares no nodata (its empty column 0 holds zeros), so every pixel is classified.
    assert (read_band(output) != 255).all()


def test_polygon_area_limits_processing(sample_scene, test_models, run_algorithm, tmp_path):
    output = tmp_path / "area.tif"
    area = f"{sample_scene / 'labels.gpkg'}|layername=landcover|subset=\"class_name\" = 'water'"
    result = run_algorithm(
        ALG,
        {
            "INPUT": str(sample_scene / "scene.tif"),
            "MODEL": str(test_models["fcn_seg.onnx"]),
            "AREA": area,
            "OUTPUT": str(output),
        },
    )
    classes = read_band(output)
    assert 0 < (classes != 255).mean() < 0.5
    assert result["TILES"] < 121  # tiles outside the water polygons were skipped


def _refused(run_algorithm, parameters, tmp_path, message, feedback=None):
    output = tmp_path / "refused.tif"
    with pytest.raises(QgsProcessingException, match=message):
        run_algorithm(ALG, {**parameters, "OUTPUT": str(output)}, feedback)
    assert not output.exists()
    assert leftover_temporaries(tmp_path) == []


def test_error_cases_leave_no_output(sample_scene, shared_data, test_models, run_algorithm, tmp_path):
    scene = str(sample_scene / "scene.tif")
    _refused(
        run_algorithm,
        {"INPUT": scene, "MODEL": str(test_models["truncated.onnx"])},
        tmp_path,
        "(?i)onnx|model",
    )
    _refused(
        run_algorithm, {"INPUT": scene, "MODEL": str(test_models["evil.pth"])}, tmp_path, "(?i)pickle|ONNX"
    )
    assert not (test_models["evil.pth"].parent / "UNPICKLED_MARKER").exists()
    solaris = str(shared_data / "solaris_atlanta/sample_geotiff.tif")
    _refused(run_algorithm, {"INPUT": solaris, "MODEL": str(test_models["fcn_seg.onnx"])}, tmp_path, "band")
    no_crs = tmp_path / "no_crs.tif"
    source = gdal.Open(scene)
    copy = gdal.GetDriverByName("GTiff").CreateCopy(str(no_crs), source)
    copy.SetProjection("")
    copy = None
    _refused(
        run_algorithm, {"INPUT": str(no_crs), "MODEL": str(test_models["fcn_seg.onnx"])}, tmp_path, "no CRS"
    )
    no_crs.unlink()
    _refused(
        run_algorithm,
        {"INPUT": scene, "MODEL": str(test_models["fcn_seg.onnx"]), "EXTENT": "0,10,0,10 [EPSG:32636]"},
        tmp_path,
        "does not overlap",
    )


@pytest.mark.parametrize("percent", [10, 50, 99])
def test_cancel_leaves_no_output(percent, sample_scene, test_models, run_algorithm, tmp_path):
    parameters = {
        "INPUT": str(sample_scene / "scene.tif"),
        "MODEL": str(test_models["fcn_seg.onnx"]),
        "BATCH_SIZE": 2,
        "CONFIDENCE": str(tmp_path / "confidence.tif"),
    }
    _refused(run_algorithm, parameters, tmp_path, "(?i)cancel", CancelAt(percent))
    assert list(tmp_path.iterdir()) == []
