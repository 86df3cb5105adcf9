"""QGIS and Qt enum values under the name each QGIS version knows: the one home for that difference.

QGIS 3.30-3.38 moved most enums into scoped types (``Qgis.ProcessingSourceType.VectorPolygon``
for ``QgsProcessing.TypeVectorPolygon``) and keeps the old names only as monkey-patched aliases,
which QGIS 4 (Qt6) drops. QGIS 3.22, the oldest we support, knows only the old names. So every value
here is looked up by its scoped name first and by the 3.22 name only where the scoped one is
missing. Plugin code takes enum values from this module, never from the QGIS or Qt classes
(``tests/qgis/test_compat.py`` checks the source for that).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import qgis.core
from qgis.core import Qgis
from qgis.PyQt import QtCore, QtGui

# Where the first word of a name is looked up. Classes are taken by name at lookup time, not
# imported, because some legacy-only classes (QgsMapLayerType) do not exist in QGIS 4.
_MODULES = (qgis.core, QtCore, QtGui)


class EnumName(NamedTuple):
    """One enum value: its scoped name, its QGIS 3.22 name, and (where the scoped value exists
    before QGIS accepts it) the ``Qgis.QGIS_VERSION_INT`` from which it is used."""

    scoped: str
    legacy: str
    accepted_from: int | None = None


ENUM_NAMES: dict[str, EnumName] = {}
"""Every value this module defines, by constant name (for the compatibility tests)."""


def lookup(dotted: str) -> Any:
    """The object at ``dotted`` (``"Qgis.LayerType.Raster"``); AttributeError where it is missing."""
    head, *rest = dotted.split(".")
    value = next((getattr(module, head) for module in _MODULES if hasattr(module, head)), None)
    if value is None:
        raise AttributeError(f"no class {head} in qgis.core, QtCore or QtGui")
    for part in rest:
        value = getattr(value, part)
    return value


def uses_scoped(name: EnumName) -> bool:
    """Whether this QGIS takes ``name`` by its scoped name."""
    if name.accepted_from is not None and name.accepted_from > Qgis.QGIS_VERSION_INT:
        return False
    try:
        lookup(name.scoped)
    except AttributeError:
        return False
    return True


def _value(constant: str, scoped: str, legacy: str, accepted_from: int | None = None) -> Any:
    name = EnumName(scoped, legacy, accepted_from)
    ENUM_NAMES[constant] = name
    return lookup(scoped if uses_scoped(name) else legacy)


# Processing parameters and sources
NUMBER_INTEGER = _value(
    "NUMBER_INTEGER", "Qgis.ProcessingNumberParameterType.Integer", "QgsProcessingParameterNumber.Integer"
)
NUMBER_DOUBLE = _value(
    "NUMBER_DOUBLE", "Qgis.ProcessingNumberParameterType.Double", "QgsProcessingParameterNumber.Double"
)
SOURCE_VECTOR_ANY_GEOMETRY = _value(
    "SOURCE_VECTOR_ANY_GEOMETRY",
    "Qgis.ProcessingSourceType.VectorAnyGeometry",
    "QgsProcessing.TypeVectorAnyGeometry",
)
SOURCE_VECTOR_POLYGON = _value(
    "SOURCE_VECTOR_POLYGON", "Qgis.ProcessingSourceType.VectorPolygon", "QgsProcessing.TypeVectorPolygon"
)
PARAMETER_FLAG_ADVANCED = _value(
    "PARAMETER_FLAG_ADVANCED",
    "Qgis.ProcessingParameterFlag.Advanced",
    "QgsProcessingParameterDefinition.FlagAdvanced",
)
SKIP_GEOMETRY_VALIDITY_CHECKS = _value(
    "SKIP_GEOMETRY_VALIDITY_CHECKS",
    "Qgis.ProcessingFeatureSourceFlag.SkipGeometryValidityChecks",
    "QgsProcessingFeatureSource.FlagSkipGeometryValidityChecks",
)
FAST_INSERT = _value("FAST_INSERT", "QgsFeatureSink.Flag.FastInsert", "QgsFeatureSink.FastInsert")

# Geometry, units, layers, transforms
WKB_POINT = _value("WKB_POINT", "Qgis.WkbType.Point", "QgsWkbTypes.Point")
WKB_POLYGON = _value("WKB_POLYGON", "Qgis.WkbType.Polygon", "QgsWkbTypes.Polygon")
WKB_MULTIPOLYGON = _value("WKB_MULTIPOLYGON", "Qgis.WkbType.MultiPolygon", "QgsWkbTypes.MultiPolygon")
GEOMETRY_POLYGON = _value("GEOMETRY_POLYGON", "Qgis.GeometryType.Polygon", "QgsWkbTypes.PolygonGeometry")
GEOMETRY_UNKNOWN = _value("GEOMETRY_UNKNOWN", "Qgis.GeometryType.Unknown", "QgsWkbTypes.UnknownGeometry")
DISTANCE_METERS = _value("DISTANCE_METERS", "Qgis.DistanceUnit.Meters", "QgsUnitTypes.DistanceMeters")
RASTER_LAYER = _value("RASTER_LAYER", "Qgis.LayerType.Raster", "QgsMapLayerType.RasterLayer")
REVERSE_TRANSFORM = _value(
    "REVERSE_TRANSFORM", "Qgis.TransformDirection.Reverse", "QgsCoordinateTransform.ReverseTransform"
)
WKT_PREFERRED_GDAL = _value(
    "WKT_PREFERRED_GDAL",
    "Qgis.CrsWktVariant.PreferredGdal",
    "QgsCoordinateReferenceSystem.WKT_PREFERRED_GDAL",
)

# Rasters
RASTER_CAPABILITY_SIZE = _value(
    "RASTER_CAPABILITY_SIZE", "Qgis.RasterInterfaceCapability.Size", "QgsRasterDataProvider.Size"
)
ALPHA_BAND = _value("ALPHA_BAND", "Qgis.RasterColorInterpretation.AlphaBand", "QgsRaster.AlphaBand")
DATA_TYPE_BYTE = _value("DATA_TYPE_BYTE", "Qgis.DataType.Byte", "Qgis.Byte")
DATA_TYPE_UINT16 = _value("DATA_TYPE_UINT16", "Qgis.DataType.UInt16", "Qgis.UInt16")
DATA_TYPE_INT16 = _value("DATA_TYPE_INT16", "Qgis.DataType.Int16", "Qgis.Int16")
DATA_TYPE_UINT32 = _value("DATA_TYPE_UINT32", "Qgis.DataType.UInt32", "Qgis.UInt32")
DATA_TYPE_INT32 = _value("DATA_TYPE_INT32", "Qgis.DataType.Int32", "Qgis.Int32")
DATA_TYPE_FLOAT32 = _value("DATA_TYPE_FLOAT32", "Qgis.DataType.Float32", "Qgis.Float32")
DATA_TYPE_FLOAT64 = _value("DATA_TYPE_FLOAT64", "Qgis.DataType.Float64", "Qgis.Float64")
DATA_TYPE_ARGB32 = _value("DATA_TYPE_ARGB32", "Qgis.DataType.ARGB32", "Qgis.ARGB32")
DATA_TYPE_ARGB32_PREMULTIPLIED = _value(
    "DATA_TYPE_ARGB32_PREMULTIPLIED", "Qgis.DataType.ARGB32_Premultiplied", "Qgis.ARGB32_Premultiplied"
)

# Attribute field types: QgsField takes QMetaType from QGIS 3.38 (QVariant.Type before), although
# QMetaType.Type exists in every Qt.
_QMETATYPE_FIELDS = 33800
FIELD_INT = _value("FIELD_INT", "QMetaType.Type.Int", "QVariant.Int", _QMETATYPE_FIELDS)
FIELD_DOUBLE = _value("FIELD_DOUBLE", "QMetaType.Type.Double", "QVariant.Double", _QMETATYPE_FIELDS)
FIELD_STRING = _value("FIELD_STRING", "QMetaType.Type.QString", "QVariant.String", _QMETATYPE_FIELDS)

# Qt (scoped in PyQt5 5.11+ and required by PyQt6)
ALIGN_VCENTER = _value("ALIGN_VCENTER", "Qt.AlignmentFlag.AlignVCenter", "Qt.AlignVCenter")
ANTIALIASING = _value("ANTIALIASING", "QPainter.RenderHint.Antialiasing", "QPainter.Antialiasing")
IMAGE_FORMAT_ARGB32 = _value("IMAGE_FORMAT_ARGB32", "QImage.Format.Format_ARGB32", "QImage.Format_ARGB32")


def is_null(value: object) -> bool:
    """A NULL attribute value: None, or a null QVariant (PyQt5 hands NULL fields over as QVariant;
    PyQt6 as None)."""
    return value is None or (hasattr(value, "isNull") and value.isNull())
