"""Vector labels from QGIS layers, made ready to burn: class values, reprojection, repair, buffers.

The result is an in-memory OGR layer in the grid's CRS with one integer field ``burn``, its
features ordered by the overlap rule (GDAL burns later features over earlier ones).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from osgeo import ogr, osr
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsCsException,
    QgsFeatureRequest,
    QgsFeedback,
    QgsGeometry,
    QgsPointXY,
    QgsProviderRegistry,
    QgsRectangle,
    QgsUnitTypes,
    QgsVectorLayer,
    QgsWkbTypes,
)

from ..core.errors import LabelValueError, RsdlError
from ..core.labels.label_rules import (
    LabelClass,
    MaskValues,
    OverlapRule,
    assign_text_class_values,
    check_classes_against_mask_values,
    class_value_from_number,
    make_label_classes,
    text_class_name,
)
from ..core.raster.grid import RasterGrid
from .compat import DISTANCE_METERS, GEOMETRY_POLYGON, REVERSE_TRANSFORM, is_null
from .gdal_calls import raise_if_cancelled

BURN_FIELD = "burn"
BUFFER_SEGMENTS = 8


@dataclass(frozen=True)
class ClassSource:
    """Where a feature's class comes from: a constant, a field, or else the layer (1, 2, ...)."""

    burn_value: int | None = None
    field: str | None = None
    name_field: str | None = None


@dataclass(frozen=True)
class BufferSpec:
    """Width of the band burnt around line and point labels (0: burn them as they are)."""

    width: float = 0.0
    in_metres: bool = False
    width_field: str | None = None


@dataclass
class PreparedLabels:
    """Burn-ready labels and what preparing them found."""

    datasource: ogr.DataSource
    classes: list[LabelClass]
    features_read: int = 0
    features_on_grid: int = 0
    repaired: int = 0
    skipped_null: int = 0
    skipped_empty: int = 0
    unrepairable: int = 0  # invalid polygons with no area left after repair
    buffered: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def layer(self) -> ogr.Layer:
        return self.datasource.GetLayer(0)


def provider_layer_name(layer: QgsVectorLayer) -> str:
    """The layer's name inside its data source (a GeoPackage table...), else its QGIS name."""
    parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
    return parts.get("layerName") or layer.name()


def _is_blank(value: object) -> bool:
    """NULL (None or a QVariant's), or blank text: no class (``text_class_name``'s rule)."""
    return is_null(value) or text_class_name(value) is None


def _check_layer(layer: QgsVectorLayer, source: ClassSource) -> None:
    name = layer.name()
    if not layer.isValid():
        raise RsdlError(f"Vector layer '{name}' could not be opened; check its path.")
    if not layer.crs().isValid():
        raise RsdlError(
            f"Vector layer '{name}' has no CRS; set it in Layer Properties > Source "
            "(or with 'Assign projection') and try again."
        )
    if layer.featureCount() == 0:
        raise RsdlError(
            f"Vector layer '{name}' is empty: it has no features to burn. Choose a layer with "
            "features (or clear its filter)."
        )
    for needed in (source.field, source.name_field):
        if needed and layer.fields().indexOf(needed) < 0:
            raise RsdlError(
                f"Vector layer '{name}' has no field '{needed}'; its fields are: "
                f"{', '.join(layer.fields().names())}."
            )


def _text_class_values(
    layers: list[QgsVectorLayer], source: ClassSource, values: MaskValues
) -> dict[str, int] | None:
    """Ids for a text class field across all layers; None when the field is numeric."""
    if not source.field:
        return None
    kinds = {layer.fields().field(source.field).isNumeric() for layer in layers}
    if kinds == {True}:
        return None
    names: set[str] = set()
    for layer in layers:
        index = layer.fields().indexOf(source.field)
        names.update(text_class_name(v) for v in layer.uniqueValues(index) if not _is_blank(v))
    reserved = {values.background_value, values.ignore_value}
    return assign_text_class_values(names, reserved)


def _request_for_grid(
    layer: QgsVectorLayer, grid_rect: QgsRectangle, to_grid: QgsCoordinateTransform
) -> QgsFeatureRequest:
    """Features near the grid only, when the grid's extent can be mapped into the layer's CRS."""
    request = QgsFeatureRequest()
    try:
        layer_rect = to_grid.transformBoundingBox(grid_rect, REVERSE_TRANSFORM)
    except QgsCsException:
        return request
    if layer_rect.isFinite() and not layer_rect.isEmpty():
        request.setFilterRect(layer_rect)
    return request


def _metre_buffer(
    geometry: QgsGeometry,
    width_m: float,
    grid_crs: QgsCoordinateReferenceSystem,
    context: QgsCoordinateTransformContext,
) -> QgsGeometry:
    """Buffer by a width in metres in a local azimuthal equidistant CRS (for geographic grids)."""
    centre = geometry.centroid().asPoint()
    to_wgs84 = QgsCoordinateTransform(grid_crs, QgsCoordinateReferenceSystem("EPSG:4326"), context)
    lonlat = to_wgs84.transform(QgsPointXY(centre))
    local = QgsCoordinateReferenceSystem.fromProj(
        f"+proj=aeqd +lat_0={lonlat.y()} +lon_0={lonlat.x()} +datum=WGS84 +units=m +no_defs"
    )
    there = QgsCoordinateTransform(grid_crs, local, context)
    local_geometry = QgsGeometry(geometry)
    local_geometry.transform(there)
    buffered = local_geometry.buffer(width_m / 2.0, BUFFER_SEGMENTS)
    buffered.transform(there, REVERSE_TRANSFORM)
    return buffered


class _Buffering:
    """Turns point and line labels into areas of a given width in the grid's CRS."""

    def __init__(
        self, spec: BufferSpec, grid_crs: QgsCoordinateReferenceSystem, context: QgsCoordinateTransformContext
    ) -> None:
        self.spec = spec
        self.grid_crs = grid_crs
        self.context = context
        self.metres_to_map_units: float | None = None
        if spec.in_metres and not grid_crs.isGeographic():
            self.metres_to_map_units = QgsUnitTypes.fromUnitToUnitFactor(DISTANCE_METERS, grid_crs.mapUnits())

    def width_for(self, feature_width: object) -> float:
        if self.spec.width_field and not is_null(feature_width):
            return float(feature_width)
        return self.spec.width

    def apply(self, geometry: QgsGeometry, width: float) -> QgsGeometry:
        if width <= 0:
            return geometry
        if not self.spec.in_metres:
            return geometry.buffer(width / 2.0, BUFFER_SEGMENTS)
        if self.metres_to_map_units is not None:
            return geometry.buffer(width * self.metres_to_map_units / 2.0, BUFFER_SEGMENTS)
        return _metre_buffer(geometry, width, self.grid_crs, self.context)


def _repair(geometry: QgsGeometry, geometry_type: int) -> QgsGeometry:
    """GEOS make-valid, keeping only parts of the original dimension (no slivers of lines)."""
    repaired = geometry.makeValid()
    if QgsWkbTypes.isMultiType(repaired.wkbType()) or repaired.type() != geometry_type:
        repaired.convertGeometryCollectionToSubclass(geometry_type)
    return repaired


def prepare_labels(
    layers: list[QgsVectorLayer],
    grid: RasterGrid,
    source: ClassSource,
    values: MaskValues,
    overlap: OverlapRule,
    buffer: BufferSpec,
    context: QgsCoordinateTransformContext,
    feedback: QgsFeedback | None = None,
) -> PreparedLabels:
    """Read, reproject, repair and buffer label features into a burn-ready OGR layer."""
    if not layers:
        raise RsdlError("Give at least one vector layer of labels.")
    for layer in layers:
        _check_layer(layer, source)
    text_values = _text_class_values(layers, source, values)
    grid_crs = QgsCoordinateReferenceSystem.fromWkt(grid.crs_wkt)
    xmin, ymin, xmax, ymax = grid.bounds
    grid_rect = QgsRectangle(xmin, ymin, xmax, ymax)
    buffering = _Buffering(buffer, grid_crs, context)

    names_by_value: dict[int, str] = {}
    burn_list: list[tuple[int, bytes]] = []
    prepared = PreparedLabels(datasource=None, classes=[])  # type: ignore[arg-type]
    total = sum(layer.featureCount() for layer in layers)

    for layer_number, layer in enumerate(layers, start=1):
        layer_name = provider_layer_name(layer)
        to_grid = QgsCoordinateTransform(layer.crs(), grid_crs, context)
        fields = layer.fields()
        class_index = fields.indexOf(source.field) if source.field else -1
        name_index = fields.indexOf(source.name_field) if source.name_field else -1
        width_index = fields.indexOf(buffer.width_field) if buffer.width_field else -1
        layer_is_area = QgsWkbTypes.geometryType(layer.wkbType()) == GEOMETRY_POLYGON
        if buffer.width_field and width_index < 0 and not layer_is_area:
            raise RsdlError(f"Vector layer '{layer.name()}' has no field '{buffer.width_field}'.")

        for feature in layer.getFeatures(_request_for_grid(layer, grid_rect, to_grid)):
            prepared.features_read += 1
            if prepared.features_read % 500 == 0:
                raise_if_cancelled(feedback)
                if feedback is not None:
                    feedback.setProgress(100.0 * prepared.features_read / max(total, 1))

            # The class value of this feature.
            if source.burn_value is not None:
                value, name = source.burn_value, layer_name
            elif class_index >= 0:
                raw = feature.attribute(class_index)
                if _is_blank(raw):
                    prepared.skipped_null += 1
                    continue
                if text_values is not None:
                    name = text_class_name(raw)
                    value = text_values[name]
                else:
                    value = class_value_from_number(raw, source.field, layer.name())
                    name = str(value)
            else:
                value, name = layer_number, layer_name
            if name_index >= 0 and not is_null(feature.attribute(name_index)):
                name = str(feature.attribute(name_index))
            names_by_value.setdefault(value, name)

            geometry = feature.geometry()
            if geometry.isNull() or geometry.isEmpty():
                prepared.skipped_empty += 1
                continue
            geometry = QgsGeometry(geometry)
            # Per feature, not per layer: a layer of mixed types holds polygons, lines and points.
            geometry_type = geometry.type()
            is_area = geometry_type == GEOMETRY_POLYGON
            try:
                geometry.transform(to_grid)
            except QgsCsException as error:
                raise RsdlError(
                    f"Feature {feature.id()} of layer '{layer.name()}' cannot be reprojected to "
                    f"the grid's CRS: {error}. Check the layer's CRS."
                ) from error
            if is_area and not geometry.isGeosValid():
                geometry = _repair(geometry, geometry_type)
                prepared.repaired += 1
                if geometry.isEmpty():
                    prepared.unrepairable += 1
                    continue
            if not is_area:
                width = buffering.width_for(feature.attribute(width_index) if width_index >= 0 else None)
                if width > 0:
                    geometry = buffering.apply(geometry, width)
                    prepared.buffered += 1
            if geometry.isEmpty() or not geometry.boundingBox().intersects(grid_rect):
                continue
            burn_list.append((value, bytes(geometry.asWkb())))

    prepared.features_on_grid = len(burn_list)
    if prepared.features_on_grid == 0:
        names = ", ".join(f"'{layer.name()}'" for layer in layers)
        if prepared.unrepairable:
            raise RsdlError(
                f"No label feature is left to burn from {names}: {prepared.unrepairable} invalid "
                "polygon(s) have no area once repaired (e.g. all their points on a line). Fix or "
                "redraw them (Vector > Geometry Tools > Check Validity / Fix Geometries)."
            )
        if prepared.features_read and prepared.skipped_null == prepared.features_read:
            raise LabelValueError(
                f"Field '{source.field}' of {names} holds no class: every value is NULL or blank. "
                "Fill the field or choose another one."
            )
        raise RsdlError(
            "No label feature overlaps the output grid "
            f"({prepared.features_read} features read from {names}). Check that the layers' CRS "
            "is right and that they cover the reference raster or extent."
        )
    prepared.classes = make_label_classes(names_by_value)
    check_classes_against_mask_values(prepared.classes, values)
    if source.field and text_values is None and not names_by_value:
        raise LabelValueError(f"Field '{source.field}' holds no class values (all NULL).")

    if overlap == OverlapRule.HIGHEST_VALUE:
        burn_list.sort(key=lambda item: item[0])
    elif overlap == OverlapRule.LOWEST_VALUE:
        burn_list.sort(key=lambda item: -item[0])
    prepared.datasource = _ogr_layer(burn_list, grid.crs_wkt)
    return prepared


def _ogr_layer(burn_list: list[tuple[int, bytes]], crs_wkt: str) -> ogr.DataSource:
    """An in-memory OGR layer holding the geometries and their burn values, in order."""
    datasource = ogr.GetDriverByName("Memory").CreateDataSource("rsdl_labels")
    srs = osr.SpatialReference()
    srs.ImportFromWkt(crs_wkt)
    layer = datasource.CreateLayer("labels", srs, ogr.wkbUnknown)
    layer.CreateField(ogr.FieldDefn(BURN_FIELD, ogr.OFTInteger64))
    definition = layer.GetLayerDefn()
    for value, wkb in burn_list:
        feature = ogr.Feature(definition)
        feature.SetField(BURN_FIELD, value)
        feature.SetGeometryDirectly(ogr.CreateGeometryFromWkb(wkb))
        layer.CreateFeature(feature)
    return datasource
