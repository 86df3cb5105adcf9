"""qgis_process fixtures: the plugin staged as the zip would install it, in an isolated HOME."""

from __future__ import annotations

import pytest

from scripts.build_plugin import stage
from scripts.qgis_process_runner import QgisProcess


@pytest.fixture(scope="session")
def qgis_process(tmp_path_factory) -> QgisProcess:
    plugins = tmp_path_factory.mktemp("plugins")
    stage(plugins)
    return QgisProcess(plugins, tmp_path_factory.mktemp("qgis_home"))
