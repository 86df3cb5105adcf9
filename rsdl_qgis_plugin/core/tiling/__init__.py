"""Tiled inference in pure numpy: the tile plan (where tiles lie) apart from the blending accumulator."""
