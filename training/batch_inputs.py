"""Which rasters a batch prediction reads, and where each one's outputs go.

Inputs come as paths or glob patterns, a text file of them (``--input-list``), or an index
(``--index``): a vector file of footprints with a path field (what ``gdaltindex`` writes, field
``location``; STAC-like catalogues exported to a GeoPackage), or a GDAL VRT, whose sources are
the rasters. Relative paths in a list or an index are relative to that file's folder.

Outputs mirror the inputs' folders below their common parent, so ``a/scene.tif`` and
``b/scene.tif`` write ``out/a/scene_classes.tif`` and ``out/b/scene_classes.tif``; rasters in
one folder write flat into the output folder. Only two rasters of one folder with one stem
(``scene.tif`` and ``scene.jp2``) would still collide: they are refused.
"""

from __future__ import annotations

import glob
import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path

from rsdl_qgis_plugin.core.errors import RsdlError

__all__ = ["DEFAULT_INDEX_FIELD", "expand_inputs", "output_folders"]

DEFAULT_INDEX_FIELD = "location"  # gdaltindex's path field


def _list_file_entries(list_file: Path) -> list[str]:
    base = list_file.parent
    entries = []
    for line in list_file.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            entries.append(line if Path(line).is_absolute() else str(base / line))
    return entries


def _vrt_sources(vrt: Path) -> list[str]:
    """The source rasters of a GDAL VRT (``SourceFilename``), in order, each once."""
    try:
        root = ElementTree.parse(vrt).getroot()
    except (ElementTree.ParseError, OSError) as error:
        raise RsdlError(f"The index '{vrt}' is not a readable VRT: {error}.") from None
    sources: list[str] = []
    for element in root.iter("SourceFilename"):
        name = (element.text or "").strip()
        relative = element.get("relativeToVRT", "0") == "1" or not Path(name).is_absolute()
        path = str(vrt.parent / name) if relative else name
        if name and path not in sources:
            sources.append(path)
    if not sources:
        raise RsdlError(f"The VRT '{vrt}' names no source raster.")
    return sources


def _vector_index_paths(index: Path, field: str) -> list[str]:
    """The path field of every feature of a footprint index (gdaltindex, a STAC export)."""
    import pyogrio
    import pyogrio.raw
    from pyogrio.errors import DataSourceError

    try:
        fields = [str(name) for name in pyogrio.read_info(index)["fields"]]
    except DataSourceError as error:
        raise RsdlError(f"The index '{index}' cannot be read as a vector file or VRT: {error}.") from None
    if field not in fields:
        raise RsdlError(
            f"The index '{index}' has no field '{field}' (its fields: {', '.join(fields) or 'none'}); "
            "name the field that holds the raster paths with --index-field."
        )
    values = pyogrio.raw.read(index, columns=[field], read_geometry=False)[3][0]
    paths = []
    for value in values:
        if value is None or not str(value).strip():
            continue
        text = str(value).strip()
        paths.append(text if Path(text).is_absolute() else str(index.parent / text))
    if not paths:
        raise RsdlError(f"The index '{index}' lists no raster in its field '{field}'.")
    return paths


def expand_inputs(
    patterns: Sequence[str],
    list_file: str | os.PathLike | None = None,
    index: str | os.PathLike | None = None,
    index_field: str = DEFAULT_INDEX_FIELD,
) -> list[Path]:
    """Rasters named by paths or glob patterns, a text file of them (one per line, # comments)
    and/or an index (a vector file of footprints with a path field, or a VRT): absolute paths,
    in order, each once."""
    entries = list(patterns)
    if list_file is not None:
        entries.extend(_list_file_entries(Path(list_file)))
    if index is not None:
        index = Path(index)
        if not index.is_file():
            raise RsdlError(f"The index '{index}' does not exist.")
        entries.extend(
            _vrt_sources(index) if index.suffix.lower() == ".vrt" else _vector_index_paths(index, index_field)
        )
    rasters: list[Path] = []
    seen: set[Path] = set()
    for entry in entries:
        matches = sorted(glob.glob(entry, recursive=True)) if glob.has_magic(entry) else [entry]
        if not matches:
            raise RsdlError(f"No raster matches '{entry}'.")
        for match in matches:
            path = Path(match).absolute()
            if not path.is_file():
                raise RsdlError(f"The raster '{match}' does not exist.")
            if path not in seen:
                seen.add(path)
                rasters.append(path)
    if not rasters:
        raise RsdlError("No input rasters: give paths, glob patterns, --input-list or --index.")
    return rasters


def output_folders(rasters: Sequence[Path], output_dir: str | os.PathLike) -> dict[Path, Path]:
    """Each raster's output folder: ``output_dir`` plus the raster's folder below the inputs'
    common parent. Refuses two rasters whose outputs would still share names."""
    output_dir = Path(output_dir)
    parents = [os.path.normpath(raster.parent) for raster in rasters]
    common = Path(os.path.commonpath(parents)) if parents else Path()
    folders: dict[Path, Path] = {}
    claimed: dict[Path, Path] = {}  # output folder / stem -> the raster that claimed it
    for raster, parent in zip(rasters, parents):
        folder = output_dir / Path(parent).relative_to(common)
        key = folder / raster.stem
        if key in claimed:
            raise RsdlError(
                f"'{claimed[key]}' and '{raster}' share the folder and the name '{raster.stem}', so "
                "their outputs would collide; rename one, or predict them into different output folders."
            )
        claimed[key] = raster
        folders[raster] = folder
    return folders
