"""QGIS-free building blocks shared by the plugin and the training package.

Nothing here imports qgis, osgeo, onnxruntime or torch (checked by tests/unit/test_import_boundaries.py).
"""
