"""QGIS-free building blocks shared by the plugin and the training package.

Nothing here imports qgis, osgeo, onnxruntime or torch (import-linter contracts in pyproject.toml).
Subpackages by role: contract (model spec), tiling, raster (grid, nodata), labels, metrics, reports,
datasets (training chips) and files (complete-or-absent outputs); errors.py serves them all.
"""
