"""Outputs that are complete or absent (temporary names renamed into place when done)."""
