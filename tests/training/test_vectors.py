"""vectors: label layers read through pyogrio against GDAL's own OGR bindings as the oracle."""

from __future__ import annotations

from pathlib import Path

import pytest
import shapely
from osgeo import ogr, osr
from rasterio.crs import CRS

from rsdl_qgis_plugin.core.errors import RsdlError
from training.data.vectors import read_layers, split_source


@pytest.fixture(autouse=True)
def ogr_exceptions():
    """OGR raises in these tests only: the switch is process-wide, and plugin code expects it off."""
    before = ogr.GetUseExceptions(), osr.GetUseExceptions()
    ogr.UseExceptions()
    osr.UseExceptions()
    yield
    # Undone in reverse order: GDAL keeps the error handlers on a stack.
    if not before[1]:
        osr.DontUseExceptions()
    if not before[0]:
        ogr.DontUseExceptions()


def ogr_layer(path: Path | str, layer: str | None = None) -> tuple[str, CRS, list, list[dict]]:
    """Name, CRS, geometries (shapely, None where missing or empty) and attributes, as OGR reads them."""
    source = ogr.Open(str(path))
    found = source.GetLayerByName(layer) if layer else source.GetLayer(0)
    reference = found.GetSpatialRef()
    crs = CRS.from_wkt(reference.ExportToWkt())
    geometries, attributes = [], []
    for feature in found:
        geometry = feature.GetGeometryRef()
        wkb = None if geometry is None or geometry.IsEmpty() else bytes(geometry.ExportToIsoWkb())
        geometries.append(None if wkb is None else shapely.from_wkb(wkb))
        attributes.append(
            {feature.GetFieldDefnRef(i).GetName(): _value(feature, i) for i in range(feature.GetFieldCount())}
        )
    return found.GetName(), crs, geometries, attributes


def _value(feature: ogr.Feature, index: int) -> object:
    if feature.IsFieldNull(index):
        return None
    if (
        feature.GetFieldDefnRef(index).GetType() == ogr.OFTDate
    ):  # OGR writes 2024/05/01, ISO 8601 is the file's
        year, month, day, *_ = feature.GetFieldAsDateTime(index)
        return f"{year:04d}-{month:02d}-{day:02d}"
    return feature.GetField(index)


def assert_same_geometries(ours: list, expected: list) -> None:
    assert len(ours) == len(expected)
    for mine, theirs in zip(ours, expected):
        assert (mine is None) == (theirs is None)
        if mine is not None:
            assert mine.equals_exact(theirs, tolerance=0), (mine.wkt[:80], theirs.wkt[:80])


def test_kampala_buildings_geojson_equals_ogr(shared_data):
    path = shared_data / "fair_kampala_buildings" / "buildings.geojson"
    _, crs, geometries, attributes = ogr_layer(path)

    (layer,) = read_layers(str(path))

    assert (layer.name, layer.source) == ("buildings", str(path))
    assert layer.crs == crs == CRS.from_epsg(4326)
    assert len(layer) == len(geometries) > 100
    assert_same_geometries(layer.geometries, geometries)
    assert layer.attributes == attributes
    assert all(isinstance(a["osm_id"], int) for a in layer.attributes if a["osm_id"] is not None)


def _add_layer(source: ogr.DataSource, name: str, epsg: int, rows: list[tuple]) -> None:
    reference = osr.SpatialReference()
    reference.ImportFromEPSG(epsg)
    layer = source.CreateLayer(name, reference, ogr.wkbUnknown)
    for field, kind in (("cls", ogr.OFTInteger), ("name", ogr.OFTString), ("width", ogr.OFTReal)):
        layer.CreateField(ogr.FieldDefn(field, kind))
    day = ogr.FieldDefn("surveyed", ogr.OFTDate)
    layer.CreateField(day)
    for wkt, cls, label, width, surveyed in rows:
        feature = ogr.Feature(layer.GetLayerDefn())
        for field, value in (("cls", cls), ("name", label), ("width", width), ("surveyed", surveyed)):
            if value is None:
                feature.SetFieldNull(field)
            else:
                feature.SetField(field, value)
        if wkt is not None:
            feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feature)


@pytest.fixture
def multi_layer_gpkg(tmp_path) -> Path:
    """Three feature layers created in non-alphabetical order, NULLs, an empty and a missing
    geometry, mixed geometry types, and an attribute table without geometry."""
    path = tmp_path / "labels.gpkg"
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    _add_layer(
        source,
        "water",
        32636,
        [
            ("POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0))", 2, "water", None, "2024-05-01"),
            ("MULTIPOLYGON (((20 0, 30 0, 30 5, 20 0)))", None, None, 1.5, None),
            ("POLYGON EMPTY", 2, "pond", None, None),
            (None, 2, "lake", None, None),
        ],
    )
    _add_layer(
        source,
        "buildings",
        32636,
        [
            ("POLYGON ((1 1, 2 1, 2 2, 1 1))", 1, "house", None, None),
            ("POLYGON ((0 0, 4 0, 0 4, 4 4, 0 0))", 1, "bow-tie", None, None),  # invalid, kept as is
        ],
    )
    _add_layer(source, "roads", 4326, [("LINESTRING (32.5 0.3, 32.6 0.31)", 3, "road", 6.0, None)])
    table = source.CreateLayer("notes", None, ogr.wkbNone)
    table.CreateField(ogr.FieldDefn("text", ogr.OFTString))
    source = None
    return path


def test_geopackage_layers_equal_ogr_in_file_order(multi_layer_gpkg):
    layers = read_layers(str(multi_layer_gpkg))

    assert [layer.name for layer in layers] == ["water", "buildings", "roads"]  # no aspatial table
    for layer in layers:
        name, crs, geometries, attributes = ogr_layer(multi_layer_gpkg, layer.name)
        assert layer.name == name and layer.source == f"{multi_layer_gpkg}|layername={name}"
        assert layer.crs == crs
        assert_same_geometries(layer.geometries, geometries)
        assert layer.attributes == attributes
    water = layers[0]
    assert water.geometries[2] is None and water.geometries[3] is None  # empty and missing
    assert water.attributes[1] == {"cls": None, "name": None, "width": 1.5, "surveyed": None}
    assert water.attributes[0]["surveyed"] == "2024-05-01"
    assert isinstance(water.attributes[0]["cls"], int)
    assert layers[2].crs == CRS.from_epsg(4326)


def test_a_selected_layer_alone(multi_layer_gpkg):
    (roads,) = read_layers(f"{multi_layer_gpkg}|layername=roads")
    assert roads.name == "roads" and len(roads) == 1 and roads.geometries[0].geom_type == "LineString"
    assert split_source(f"{multi_layer_gpkg}|layername=roads") == (multi_layer_gpkg, "roads")


@pytest.mark.parametrize(
    ("selector", "message"),
    [("nowhere", "has no feature layer 'nowhere'"), ("notes", "has no feature layer 'notes'")],
)
def test_an_unknown_or_aspatial_layer_is_refused_naming_the_file(multi_layer_gpkg, selector, message):
    with pytest.raises(RsdlError, match=message) as raised:
        read_layers(f"{multi_layer_gpkg}|layername={selector}")
    assert str(multi_layer_gpkg) in str(raised.value)


def test_missing_unreadable_and_crs_less_files_are_refused(tmp_path):
    with pytest.raises(RsdlError, match="does not exist"):
        read_layers(str(tmp_path / "absent.gpkg"))
    junk = tmp_path / "junk.gpkg"
    junk.write_text("not a GeoPackage")
    with pytest.raises(RsdlError, match="cannot be read as a vector file") as raised:
        read_layers(str(junk))
    assert str(junk) in str(raised.value)
    no_crs = tmp_path / "no_crs.gpkg"
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(no_crs))
    layer = source.CreateLayer("labels", None, ogr.wkbPolygon)
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetGeometry(ogr.CreateGeometryFromWkt("POLYGON ((0 0, 1 0, 1 1, 0 0))"))
    layer.CreateFeature(feature)
    source = None
    with pytest.raises(RsdlError, match="has no CRS") as raised:
        read_layers(str(no_crs))
    assert str(no_crs) in str(raised.value)


def test_a_shapefile_is_read_through_ogr_as_well(shared_data):
    path = shared_data / "rasterio_rgb" / "box.shp"
    name, crs, geometries, attributes = ogr_layer(path)
    (layer,) = read_layers(str(path))
    assert (layer.name, layer.source, layer.crs) == (name, str(path), crs)
    assert_same_geometries(layer.geometries, geometries)
    assert layer.attributes == attributes
