"""Raster geometry and pixels independent of any raster library: the grid and the nodata rule."""
