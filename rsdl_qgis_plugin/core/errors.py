"""Exceptions that carry a message meant for the analyst.

The processing layer turns every ``RsdlError`` into a ``QgsProcessingException`` unchanged, so
messages must name the bad input and say how to fix it.
"""


class RsdlError(Exception):
    """An error caused by the user's input or environment, with an actionable message."""


class LabelValueError(RsdlError):
    """A label attribute holds a value that is not a usable class id."""


class GridError(RsdlError):
    """A raster grid cannot be used (rotated, empty, no CRS...)."""


class CancelledError(RsdlError):
    """The user cancelled the run; outputs were removed."""

    def __init__(self, message: str = "Cancelled by the user; no output was written.") -> None:
        super().__init__(message)
