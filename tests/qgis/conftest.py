"""pytest-qgis fixtures: QGIS's processing framework with the rsdl provider registered."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from qgis.core import QgsApplication

QGIS_PYTHON_PLUGINS = Path("/usr/share/qgis/python/plugins")


@pytest.fixture(scope="session")
def rsdl_provider(qgis_app: QgsApplication):
    """Processing initialised (QGIS's own algorithms too) and the rsdl provider registered."""
    if str(QGIS_PYTHON_PLUGINS) not in sys.path:
        sys.path.append(str(QGIS_PYTHON_PLUGINS))
    from processing.core.Processing import Processing

    from rsdl_qgis_plugin.processing_provider.provider import RsdlProvider

    Processing.initialize()
    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("rsdl")
    if provider is None:
        provider = RsdlProvider()
        registry.addProvider(provider)
    yield provider


@pytest.fixture()
def run_algorithm(rsdl_provider):
    """Run an algorithm through processing.run, as the Toolbox and scripts do."""
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    def run(algorithm_id: str, parameters: dict[str, Any], feedback: QgsProcessingFeedback | None = None):
        context = QgsProcessingContext()
        return processing.run(
            algorithm_id, parameters, context=context, feedback=feedback or QgsProcessingFeedback()
        )

    return run
