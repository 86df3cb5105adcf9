"""The model contract: what a model file says about itself (spec) and whether a raster can feed it."""
