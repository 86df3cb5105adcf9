"""pytest-qgis fixtures: QGIS's processing framework with the rsdl provider registered."""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Any

import pytest
from qgis.core import QgsApplication

QGIS_PYTHON_PLUGINS = Path("/usr/share/qgis/python/plugins")


_KEEP_ALIVE: list[Any] = []  # the registry does not own Python providers: keep ours referenced


@pytest.fixture(scope="session", autouse=True)
def _free_qgis_objects_before_exit(qgis_app: QgsApplication):
    """Free what failed tests left alive while QGIS still runs (torn down before ``qgis_app``).

    pytest keeps the last failure's traceback in ``sys.last_traceback`` (for post-mortem
    debugging), and with it the failing test's frame and every QGIS object in its locals. Those
    were destroyed at interpreter exit, after pytest-qgis had called ``exitQgis``: a layer with
    a web (wms) provider then crashed the garbage collector on QGIS 3.40/3.44 (a segmentation
    fault, exit code 139 instead of the failure's 1).
    """
    yield
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        if hasattr(sys, name):
            delattr(sys, name)
    gc.collect()


def _registered_provider():
    """The registered rsdl provider; registered anew when a test removed it (test_plugin does)."""
    from rsdl_qgis_plugin.processing_provider.provider import RsdlProvider

    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("rsdl")
    if provider is None:
        provider = RsdlProvider()
        registry.addProvider(provider)
        _KEEP_ALIVE.append(provider)
    return provider


@pytest.fixture(scope="session")
def rsdl_provider(qgis_app: QgsApplication):
    """Processing initialised (QGIS's own algorithms too) and the rsdl provider registered."""
    if str(QGIS_PYTHON_PLUGINS) not in sys.path:
        sys.path.append(str(QGIS_PYTHON_PLUGINS))
    from processing.core.Processing import Processing

    Processing.initialize()
    yield _registered_provider()


@pytest.fixture(scope="session")
def run_processing(rsdl_provider):
    """Run an algorithm through processing.run, as the Toolbox and scripts do (any scope)."""
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    def run(algorithm_id: str, parameters: dict[str, Any], feedback: QgsProcessingFeedback | None = None):
        _registered_provider()
        context = QgsProcessingContext()
        return processing.run(
            algorithm_id, parameters, context=context, feedback=feedback or QgsProcessingFeedback()
        )

    return run


@pytest.fixture()
def run_algorithm(run_processing):
    """Run an algorithm through processing.run, as the Toolbox and scripts do."""
    return run_processing
