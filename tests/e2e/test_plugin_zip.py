"""The plugin zip installs: metadata and licence inside the plugin folder, and it runs."""

from __future__ import annotations

import configparser
import zipfile

import pytest

from scripts.build_plugin import build_zip
from scripts.qgis_process_runner import QgisProcess


def test_zip_layout(tmp_path):
    archive = build_zip(tmp_path / "rsdl_qgis_plugin.zip")
    names = zipfile.ZipFile(archive).namelist()
    assert "rsdl_qgis_plugin/metadata.txt" in names
    assert "rsdl_qgis_plugin/LICENSE" in names
    assert "rsdl_qgis_plugin/__init__.py" in names
    assert all(name.startswith("rsdl_qgis_plugin/") for name in names)
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    metadata = configparser.ConfigParser()
    metadata.read_string(zipfile.ZipFile(archive).read("rsdl_qgis_plugin/metadata.txt").decode())
    assert metadata["general"]["hasProcessingProvider"] == "yes"


@pytest.mark.qgis_process
def test_unzipped_plugin_runs_in_qgis_process(tmp_path, shared_data):
    archive = build_zip(tmp_path / "rsdl_qgis_plugin.zip")
    plugins = tmp_path / "profile_plugins"
    zipfile.ZipFile(archive).extractall(plugins)
    qgis = QgisProcess(plugins, tmp_path / "home")
    output = tmp_path / "mask.tif"
    result = qgis.run_algorithm(
        "rsdl:rasterizelabels",
        {
            "INPUT": str(shared_data / "solaris_atlanta/geotiff_labels.geojson"),
            "REFERENCE": str(shared_data / "solaris_atlanta/sample_geotiff.tif"),
            "OUTPUT": str(output),
        },
    )
    assert output.exists() and result["results"]["OUTPUT"] == str(output)
