"""The raster compatibility check of a model (core/contract/model_check.py): bands, CRS, bit depth."""

from __future__ import annotations

import pytest

from rsdl_qgis_plugin.core.contract.model_check import check_raster_compatibility
from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec
from rsdl_qgis_plugin.core.errors import ModelSpecError


def test_default_bands_are_the_first_ones():
    """An RGBA raster feeds an RGB model its first three bands (as Deepness does)."""
    result = check_raster_compatibility(ModelSpec(), 3, 4, "Byte", False)
    assert result.bands == (1, 2, 3) and result.warnings == ()


def test_spec_bands_and_user_mapping():
    spec = ModelSpec(bands=(4, 3, 2), max_pixel_value=10000)
    assert check_raster_compatibility(spec, 3, 10, "UInt16", False).bands == (4, 3, 2)
    bands, warnings = check_raster_compatibility(spec, 3, 10, "UInt16", False, (1, 1, 1))
    assert bands == (1, 1, 1) and warnings == ()


@pytest.mark.parametrize(
    ("spec", "channels", "band_count", "mapping", "message"),
    [
        (ModelSpec(), 3, 1, None, "needs 3 input bands but the raster has 1"),
        (ModelSpec(), 3, 4, (1, 2), r"band mapping lists 2 bands \[1, 2\], but the model takes 3"),
        (ModelSpec(), 3, 4, (1, 2, 5), r"band mapping names band\(s\) \[5\].*bands 1 to 4"),
        (ModelSpec(bands=(4, 3, 2)), 3, 3, None, r"'bands'\) names band\(s\) \[4\]"),
        (ModelSpec(bands=(1, 2)), 3, 3, None, r"'bands'\) lists 2 bands"),
    ],
)
def test_incompatible_bands_are_refused(spec, channels, band_count, mapping, message):
    with pytest.raises(ModelSpecError, match=message):
        check_raster_compatibility(spec, channels, band_count, "Byte", False, mapping)


def test_geographic_crs_is_refused_only_for_a_metric_model():
    with pytest.raises(ModelSpecError, match=r"geographic \(degrees\).*5.5 cm per pixel.*Reproject"):
        check_raster_compatibility(ModelSpec(resolution_cm=5.5), 3, 3, "Byte", True)
    assert check_raster_compatibility(ModelSpec(), 3, 3, "Byte", True).bands == (1, 2, 3)


@pytest.mark.parametrize("dtype", ["UInt16", "Float32", "int16"])
def test_high_bit_depth_with_scale_255_warns(dtype):
    result = check_raster_compatibility(ModelSpec(), 3, 3, dtype, False)
    assert len(result.warnings) == 1 and dtype in result.warnings[0] and "255" in result.warnings[0]


def test_eight_bit_raster_for_a_16_bit_model_warns():
    (warning,) = check_raster_compatibility(ModelSpec(max_pixel_value=10000), 3, 3, "Byte", False).warnings
    assert "10000" in warning
