"""Tiled model inference (QGIS-free engine and model backends), built in the inference issue."""
