"""qgis_io/label_source.py: labels as one open mask on a grid, from vector layers (a temporary mask,
deleted afterwards) or from a mask raster on that grid; GDAL's rasterization is the oracle."""

from __future__ import annotations

import numpy as np
import pytest
from qgis.core import (
    QgsCoordinateTransformContext,
    QgsProcessingFeedback,
    QgsProcessingMultiStepFeedback,
    QgsRasterLayer,
    QgsVectorLayer,
)

from rsdl_qgis_plugin.core.errors import GridError, LabelValueError, RsdlError
from rsdl_qgis_plugin.qgis_io.label_features import ClassSource
from rsdl_qgis_plugin.qgis_io.label_source import LabelRules, LabelSource, label_mask
from rsdl_qgis_plugin.qgis_io.raster_grid import grid_from_raster_layer
from tests.rasterize_cases import gdal_rasterize_oracle

KAMPALA = "fair_kampala_buildings"
TILE = "OAM-1238449-1046530-21.tif"


_FEEDBACK = QgsProcessingFeedback()  # outlives the step feedbacks that wrap it


def _open(source: LabelSource, grid_layer: QgsRasterLayer, work):
    steps = QgsProcessingMultiStepFeedback(source.step_count, _FEEDBACK)
    grid = grid_from_raster_layer(grid_layer)
    return label_mask(source, grid_layer, grid, None, work, QgsCoordinateTransformContext(), steps, "HINT")


def test_vector_labels_become_a_temporary_mask(shared_data, tmp_path, qgis_app):
    labels = shared_data / KAMPALA / "buildings.geojson"
    tile = shared_data / KAMPALA / "tiles" / TILE
    grid_layer = QgsRasterLayer(str(tile), "tile")
    source = LabelSource(None, [QgsVectorLayer(str(labels), "buildings_all", "ogr")], LabelRules())
    assert source.step_count == 2 and source.rules.names_from_layers
    with _open(source, grid_layer, tmp_path) as mask:
        burned = mask.dataset.GetRasterBand(1).ReadAsArray()
        assert [c.name for c in mask.description.classes] == ["buildings_all"]  # the layer name
        assert mask.names_from_layers
        assert len(list(tmp_path.iterdir())) == 1  # the temporary folder
    assert np.array_equal(burned, gdal_rasterize_oracle(labels, tile, 1))
    assert mask.dataset is None and list(tmp_path.iterdir()) == []  # closed and deleted


def test_field_names_are_not_layer_names():
    assert not LabelRules(source=ClassSource(field="class_name")).names_from_layers
    assert not LabelRules(source=ClassSource(field="class_id", name_field="name")).names_from_layers
    assert LabelRules(source=ClassSource(burn_value=1, field="ignored")).names_from_layers
    with pytest.raises(LabelValueError, match="both 255"):
        _ = LabelRules(background_value=255, ignore_value=255).values


def test_mask_raster_must_be_on_the_grid(shared_data, tmp_path, qgis_app):
    tiles = shared_data / KAMPALA / "tiles"
    grid_layer = QgsRasterLayer(str(tiles / TILE), "tile")
    other = QgsRasterLayer(str(tiles / "OAM-1238450-1046531-21.tif"), "other")
    source = LabelSource(other, [], LabelRules())
    assert source.step_count == 1
    with pytest.raises((GridError, RsdlError), match="HINT"), _open(source, grid_layer, tmp_path):
        pass
    assert list(tmp_path.iterdir()) == []
