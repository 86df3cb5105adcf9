"""Render a PNG map of a segmentation with QGIS's own renderer (no desktop, no project file).

The image under its class raster (the paletted style rsdl:segment writes beside it, drawn
semi-transparent, background left out) and, optionally, the class polygons outlined in the class
colours; a title above and a legend beside the map, with each class's IoU when an evaluation
CSV (rsdl:evaluate's OUTPUT_CSV) is given.

    python scripts/render_map.py IMAGE CLASSES OUTPUT.png [--polygons classes.gpkg]
        [--metrics classes.csv] [--title TEXT] [--width 900]

Runs with QT_QPA_PLATFORM=offscreen (set here when unset). Used by scripts/demo.py.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: the plugin package lives beside scripts/
    sys.path.insert(0, str(REPO))

TITLE_HEIGHT = 48
LEGEND_WIDTH = 250
MARGIN = 16
SWATCH = 18
CLASS_OPACITY = 0.5  # the imagery stays readable under the classes
OUTLINE_WIDTH_MM = 0.4
OUTLINE_DARKER = 160  # percent
IOU_COLUMN = 150  # legend x offset of the IoU column
BACKGROUND_NAMES = {"background"}


@dataclass(frozen=True)
class LegendEntry:
    """One class of the legend."""

    name: str
    color: str  # #rrggbb
    iou: float | None = None


def image_size(map_width: int, aspect: float) -> tuple[int, int]:
    """The PNG's (width, height) for a map ``map_width`` pixels wide of height/width ``aspect``."""
    return map_width + LEGEND_WIDTH, TITLE_HEIGHT + round(map_width * aspect)


def read_ious(csv_path: Path | None) -> dict[str, float]:
    """IoU per class name from rsdl:evaluate's CSV (undefined IoUs are empty and left out)."""
    if csv_path is None or not csv_path.exists():
        return {}
    with csv_path.open(encoding="utf-8") as stream:
        return {row["name"].lower(): float(row["iou"]) for row in csv.DictReader(stream) if row["iou"]}


def render_map(
    image: Path,
    classes: Path,
    output: Path,
    polygons: Path | None = None,
    metrics: Path | None = None,
    title: str = "",
    map_width: int = 900,
) -> tuple[int, int]:
    """Write the PNG and return its size. Needs a running QgsApplication."""
    from qgis.core import (
        QgsCategorizedSymbolRenderer,
        QgsFillSymbol,
        QgsMapRendererParallelJob,
        QgsMapSettings,
        QgsPalettedRasterRenderer,
        QgsRasterLayer,
        QgsRectangle,
        QgsRendererCategory,
        QgsVectorLayer,
    )
    from qgis.PyQt.QtCore import QRectF, QSize
    from qgis.PyQt.QtGui import QColor, QFont, QImage, QPainter

    from rsdl_qgis_plugin.qgis_io.compat import ALIGN_VCENTER, ANTIALIASING, IMAGE_FORMAT_ARGB32

    scene = QgsRasterLayer(str(image), "image", "gdal")
    class_layer = QgsRasterLayer(str(classes), "classes", "gdal")  # opens with its .qml style
    for layer in (scene, class_layer):
        if not layer.isValid():
            raise RuntimeError(f"QGIS cannot open '{layer.source()}'.")
    ious = read_ious(metrics)
    legend: list[LegendEntry] = []
    layers = [class_layer, scene]  # top first
    renderer = class_layer.renderer()
    if isinstance(renderer, QgsPalettedRasterRenderer):
        shown = [c for c in renderer.classes() if c.label.lower() not in BACKGROUND_NAMES]
        styled = QgsPalettedRasterRenderer(class_layer.dataProvider(), 1, shown)  # others transparent
        styled.setOpacity(CLASS_OPACITY)
        class_layer.setRenderer(styled)
        legend = [LegendEntry(c.label, c.color.name(), ious.get(c.label.lower())) for c in shown]
    if polygons is not None:
        outlines = QgsVectorLayer(str(polygons), "polygons", "ogr")
        if not outlines.isValid():
            raise RuntimeError(f"QGIS cannot open '{polygons}'.")
        categories = [
            QgsRendererCategory(
                entry.name,
                QgsFillSymbol.createSimple(
                    {
                        "style": "no",
                        # darker than the class fill, so each region's edge stands out
                        "outline_color": QColor(entry.color).darker(OUTLINE_DARKER).name(),
                        "outline_width": str(OUTLINE_WIDTH_MM),
                    }
                ),
                entry.name,
            )
            for entry in legend
        ]  # classes without a category (background) are not drawn
        outlines.setRenderer(QgsCategorizedSymbolRenderer("class_name", categories))
        layers.insert(0, outlines)

    extent: QgsRectangle = scene.extent()
    aspect = extent.height() / extent.width()
    width, height = image_size(map_width, aspect)
    settings = QgsMapSettings()
    settings.setLayers(layers)
    settings.setDestinationCrs(scene.crs())
    settings.setExtent(extent)
    settings.setOutputSize(QSize(map_width, height - TITLE_HEIGHT))
    settings.setBackgroundColor(QColor("white"))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    rendered = job.renderedImage()

    picture = QImage(width, height, IMAGE_FORMAT_ARGB32)
    picture.fill(QColor("white"))
    painter = QPainter(picture)
    painter.setRenderHint(ANTIALIASING)
    painter.drawImage(0, TITLE_HEIGHT, rendered)
    font = QFont()
    font.setPixelSize(20)
    font.setBold(True)
    painter.setFont(font)
    painter.drawText(QRectF(MARGIN, 0, width - 2 * MARGIN, TITLE_HEIGHT), ALIGN_VCENTER, title)
    font.setPixelSize(15)
    font.setBold(False)
    painter.setFont(font)
    x, y = map_width + MARGIN, TITLE_HEIGHT + MARGIN
    if ious:
        painter.drawText(QRectF(x + IOU_COLUMN, y, LEGEND_WIDTH, SWATCH), ALIGN_VCENTER, "IoU")
        y += SWATCH + 8
    for entry in legend:
        painter.fillRect(QRectF(x, y, SWATCH, SWATCH), QColor(entry.color))
        painter.drawRect(QRectF(x, y, SWATCH, SWATCH))
        painter.drawText(QRectF(x + SWATCH + 8, y, IOU_COLUMN, SWATCH), ALIGN_VCENTER, entry.name)
        if entry.iou is not None:
            iou_box = QRectF(x + IOU_COLUMN, y, LEGEND_WIDTH - IOU_COLUMN, SWATCH)
            painter.drawText(iou_box, ALIGN_VCENTER, f"{entry.iou:.3f}")
        y += SWATCH + 8
    painter.end()
    output.parent.mkdir(parents=True, exist_ok=True)
    if not picture.save(str(output), "PNG"):
        raise RuntimeError(f"Could not write '{output}'.")
    return width, height


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("image", type=Path)
    parser.add_argument("classes", type=Path, help="class raster (rsdl:segment's OUTPUT)")
    parser.add_argument("output", type=Path, help="PNG to write")
    parser.add_argument("--polygons", type=Path, help="class polygons (rsdl:segment's OUTPUT_POLYGONS)")
    parser.add_argument("--metrics", type=Path, help="rsdl:evaluate's OUTPUT_CSV: IoU in the legend")
    parser.add_argument("--title", default="")
    parser.add_argument("--width", type=int, default=900, help="map width in pixels (legend added)")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import QgsApplication

    application = QgsApplication([], False)
    application.initQgis()
    try:
        size = render_map(
            args.image, args.classes, args.output, args.polygons, args.metrics, args.title, args.width
        )
    finally:
        application.exitQgis()
    print(f"map: {args.output} ({size[0]} x {size[1]} px)")


if __name__ == "__main__":
    main()
