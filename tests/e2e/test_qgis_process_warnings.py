"""The Python that qgis_process embeds, in the environment the runner gives it: the plugin's own
DeprecationWarnings are errors there, as under pytest, even after qgis.utils resets the warning
filters when it loads (scripts/qgis_process_site/sitecustomize.py); other code's stay warnings."""

from __future__ import annotations

import subprocess

from tests.e2e.system_python import system_python

PROBE = """
import warnings
import qgis.utils  # resets the filters: warnings.simplefilter("default")
for module in ("rsdl_qgis_plugin.processing_provider.probe", "qgis.probe"):
    try:
        warnings.warn_explicit("deprecated", DeprecationWarning, "probe.py", 1, module=module)
        print(module, "warned")
    except DeprecationWarning:
        print(module, "error")
"""


def test_the_plugins_deprecations_are_errors_inside_qgis_process(qgis_process):
    result = subprocess.run(
        [str(system_python()), "-c", PROBE], env=qgis_process.env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[:2] == [
        "rsdl_qgis_plugin.processing_provider.probe error",
        "qgis.probe warned",
    ], result.stdout + result.stderr[-2000:]
