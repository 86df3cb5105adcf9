"""Adapters between QGIS layers / GDAL and the QGIS-free core."""
