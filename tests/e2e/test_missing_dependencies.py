"""Without onnxruntime and torch in QGIS's Python the plugin still loads, and running a model says
what is missing and the exact command that installs it into the Python QGIS runs.

qgis_process embeds Debian's system Python, which sees the venv's packages only through the
PYTHONPATH the runner sets: with it emptied, QGIS's Python is the bare system one.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.build_plugin import stage
from scripts.qgis_process_runner import QgisProcess
from tests.e2e.system_python import system_module_file

pytestmark = pytest.mark.qgis_process
INSTALL_COMMAND = re.compile(
    r'"(?P<python>/\S+)" -m pip install (--user --break-system-packages )?(?P<package>\w+)'
)


@pytest.fixture(scope="module")
def bare_qgis(tmp_path_factory) -> QgisProcess:
    home = tmp_path_factory.mktemp("bare_home")
    if system_module_file("onnxruntime", home):
        pytest.skip("QGIS's own Python has onnxruntime installed: nothing is missing to test")
    qgis = QgisProcess(stage(tmp_path_factory.mktemp("bare_plugins")).parent, home)
    qgis.env["PYTHONPATH"] = ""  # hide the venv from the embedded Python
    return qgis


def test_plugin_loads_without_the_runtimes(bare_qgis):
    listed = bare_qgis.run("list").stdout
    for algorithm in (
        "rsdl:segment",
        "rsdl:evaluate",
        "rsdl:rasterizelabels",
        "rsdl:rasterize_segment_evaluate",
        "rsdl:detect",
        "rsdl:detect_evaluate",
    ):
        assert algorithm in listed, f"{algorithm} missing from qgis_process list:\n{listed}"


@pytest.mark.parametrize(("model", "package"), [("fcn_seg.onnx", "onnxruntime"), ("fcn_seg.pt", "torch")])
def test_running_a_model_names_the_package_and_the_install_command(
    bare_qgis, sample_scene, test_models, tmp_path, model, package
):
    if model not in test_models:
        pytest.skip(f"{model} needs torch in the test environment to be written")
    if package == "torch" and system_module_file("torch", tmp_path):
        pytest.skip("QGIS's own Python has torch installed")
    output = tmp_path / "never.tif"
    result = bare_qgis.run_algorithm(
        "rsdl:segment",
        {"INPUT": str(sample_scene / "scene.tif"), "MODEL": str(test_models[model]), "OUTPUT": str(output)},
        check=False,
    )
    message = result.get("stdout", "") + result.get("stderr", "")
    assert result.get("returncode", 0) != 0 and f"Python package '{package}'" in message, message
    command = INSTALL_COMMAND.search(message)
    assert command and command["package"] == package, message
    # The interpreter named is QGIS's own Python (not the venv's, nor the first python3 on the PATH)
    python = Path(command["python"])
    assert python.exists() and not str(python).startswith(sys.prefix), message
    reported = subprocess.run(
        [str(python), "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True, check=True
    )
    assert reported.stdout.strip() == sys.base_prefix
    assert not output.exists()
