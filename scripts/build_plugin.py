"""Stage, zip or deploy the QGIS plugin folder.

The installable plugin is the folder ``rsdl_qgis_plugin/`` with ``metadata.txt`` and ``LICENSE``
placed inside it (the repository keeps them at the top level).

    python scripts/build_plugin.py zip dist/rsdl_qgis_plugin.zip
    python scripts/build_plugin.py stage build/plugins          # for QGIS_PLUGINPATH
    python scripts/build_plugin.py deploy ~/.local/share/QGIS/QGIS3/profiles/default/python/plugins
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLUGIN_NAME = "rsdl_qgis_plugin"
TOP_LEVEL_FILES = ("metadata.txt", "LICENSE")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


def stage(parent: Path) -> Path:
    """Copy the plugin into ``parent/rsdl_qgis_plugin`` (replacing it) and return that folder."""
    parent.mkdir(parents=True, exist_ok=True)
    target = parent / PLUGIN_NAME
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        shutil.rmtree(target)
    shutil.copytree(REPO / PLUGIN_NAME, target, ignore=IGNORED)
    for name in TOP_LEVEL_FILES:
        shutil.copy2(REPO / name, target / name)
    return target


def build_zip(zip_path: Path) -> Path:
    """Write the installable zip (one top-level folder, as QGIS's plugin installer expects)."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        folder = stage(Path(work))
        temp_zip = zip_path.with_name(f".{zip_path.name}.tmp")
        with zipfile.ZipFile(temp_zip, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(folder.parent).as_posix())
        os.replace(temp_zip, zip_path)
    return zip_path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=("zip", "stage", "deploy"))
    parser.add_argument("target", type=Path, help="zip file (zip) or plugins folder (stage, deploy)")
    args = parser.parse_args()
    if args.action == "zip":
        print(f"plugin zip: {build_zip(args.target)}")
    else:
        print(f"plugin folder: {stage(args.target.expanduser())}")
        if args.action == "deploy":
            print("Restart QGIS and enable 'rsdl' in Plugins > Manage and Install Plugins.")


if __name__ == "__main__":
    main()
