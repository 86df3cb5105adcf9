"""Tiled model inference, QGIS-free: model backends, the tile stream, the blending engine, sinks."""
