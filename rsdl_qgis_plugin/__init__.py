"""rsdl: deep learning for remote sensing in QGIS (Processing provider ``rsdl``)."""


def classFactory(iface):  # noqa: N802 (QGIS plugin entry point)
    """QGIS calls this to create the plugin; imports stay lazy so a broken extra never blocks loading."""
    from .plugin import RsdlPlugin

    return RsdlPlugin(iface)
