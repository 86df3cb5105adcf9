"""Section 2: faults. Cancel at 10, 50 and 99 % (and QGIS runs the next job fine), a full disk
(a small tmpfs in-process; a file-size limit under qgis_process), a read-only filesystem, and a
backend that runs out of memory in the middle of a run."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import onnxruntime
import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from rsdl_qgis_plugin.inference.backends import OnnxBackend
from tests.cancel_feedback import CancelAt
from tests.robustness.checks import (
    InputGuard,
    Inputs,
    assert_nothing_left,
    assert_outputs_complete,
    output_paths,
    qgis_process_message,
    qgis_process_value,
)

PAGE = 4096
Run = Callable[[Inputs, Path], dict[str, Any]]

# One run of each writing algorithm with every file output it has (so none may be left behind).
RUNS: dict[str, Run] = {
    "rsdl:segment": lambda inputs, out: {
        "INPUT": inputs["rgb"],
        "MODEL": inputs.model("fcn_seg.onnx"),
        "TILE_SIZE": 16,
        "BATCH_SIZE": 2,
        "OUTPUT": str(out / "classes.tif"),
        "CONFIDENCE": str(out / "confidence.tif"),
        "OUTPUT_POLYGONS": str(out / "polygons.gpkg"),
    },
    "rsdl:rasterizelabels": lambda inputs, out: {
        "INPUT": [inputs["labels"]],
        "FIELD": "cls",
        "REFERENCE": inputs["rgb"],
        "OUTPUT": str(out / "mask.tif"),
        "STATISTICS": str(out / "statistics.json"),
        "CHART": str(out / "chart.png"),
    },
    "rsdl:exportchips": lambda inputs, out: {
        "INPUT": inputs["rgb"],
        "LABELS": [inputs["labels"]],
        "FIELD": "cls",
        "CHIP_SIZE": 16,
        "VAL_FRACTION": 0,
        "OUTPUT": str(out / "chips"),
    },
}


# -- cancel ------------------------------------------------------------------------------------


@pytest.mark.parametrize("percent", [10, 50, 99])
@pytest.mark.parametrize("algorithm", list(RUNS))
def test_cancel_leaves_nothing_and_qgis_runs_on(algorithm, percent, hostile, run_algorithm, tmp_path):
    parameters = RUNS[algorithm](hostile, tmp_path)
    guard = InputGuard(hostile)
    feedback = CancelAt(percent)
    with pytest.raises(QgsProcessingException, match=r"(?i)cancel"):
        run_algorithm(algorithm, parameters, feedback)
    assert feedback.isCanceled()
    assert_nothing_left(parameters, tmp_path)
    guard.assert_unchanged()
    # QGIS stays usable: the same job runs to the end right after, in the same session.
    run_algorithm(algorithm, parameters, QgsProcessingFeedback())
    assert_outputs_complete(parameters, tmp_path)
    guard.assert_unchanged()


# -- a full disk ------------------------------------------------------------------------------


@contextlib.contextmanager
def small_filesystem(folder: Path, size: int, options: str = "") -> Iterator[Path]:
    """A tmpfs of ``size`` bytes mounted on ``folder`` (root only; skips where mounts are denied)."""
    folder.mkdir(exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}{options}", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        busy = subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0
        if busy:  # a file is still open there: detach the mount anyway, then fail
            subprocess.run(["umount", "--lazy", str(folder)], check=True)
    assert not busy, f"a file on {folder} was still open after the run"


def _used_bytes(folder: Path) -> int:
    stats = os.statvfs(folder)
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize


def _assert_disk_full_error(message: str, parameters: dict[str, Any]) -> None:
    names = [path.name for path in output_paths(parameters)]
    assert any(name in message for name in names), f"no output named in: {message}"
    assert "disk" in message.lower(), message
    assert "Traceback" not in message and ".rsdl-tmp-" not in message, message


# A vector output too: QGIS writes it through its own sink, which commits only when it closes.
DISK_RUNS: dict[str, Run] = {
    **RUNS,
    "rsdl:classifytiles": lambda inputs, out: {
        "INPUT": inputs["rgb"],
        "MODEL": inputs.model("classifier.onnx"),
        "RESAMPLE": False,
        "TILE_SIZE": 32,
        "STRIDE": 4,  # overlapping tiles: about 500 features
        "OUTPUT": str(out / "tiles.gpkg"),
    },
}


@pytest.mark.parametrize("algorithm", list(DISK_RUNS))
def test_full_disk_gives_a_clear_error_and_no_partial_output(algorithm, hostile, run_algorithm, tmp_path):
    """Filesystems from a tenth of the outputs' size up: each run is complete or leaves nothing."""
    with small_filesystem(tmp_path / "disk", 64 * 2**20) as disk:
        parameters = DISK_RUNS[algorithm](hostile, disk)
        run_algorithm(algorithm, parameters)
        needed = _used_bytes(disk)
    failures = 0
    for share in (0.1, 0.5, 0.9):
        size = max(PAGE, int(needed * share) // PAGE * PAGE)
        with small_filesystem(tmp_path / "disk", size) as disk:
            parameters = DISK_RUNS[algorithm](hostile, disk)
            try:
                run_algorithm(algorithm, parameters)
            except QgsProcessingException as error:
                failures += 1
                _assert_disk_full_error(str(error), parameters)
                assert_nothing_left(parameters, disk)
            else:
                assert_outputs_complete(parameters, disk)
    print(f"{algorithm}: {failures} of 3 small filesystems refused the run cleanly")
    assert failures >= 2, "the filesystems were not small enough to fail"


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:  # in the child before exec: writes past the limit fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return apply


@pytest.mark.qgis_process
@pytest.mark.parametrize("algorithm", list(RUNS))
def test_file_size_limit_through_qgis_process(algorithm, hostile, qgis_process, sample_scene, tmp_path):
    """qgis_process under RLIMIT_FSIZE (no root needed): writes fail with EFBIG, as on a full disk."""
    scene = {
        "rgb": sample_scene / "scene.tif",
        "labels": f"{sample_scene / 'labels.gpkg'}|layername=landcover",
    }
    inputs = Inputs(hostile.folder, {**hostile.paths, **scene}, hostile.models)  # 512 x 512: big outputs
    parameters = RUNS[algorithm](inputs, tmp_path)
    if "FIELD" in parameters:
        parameters["FIELD"] = "class_name"
    qgis_process.enable_plugin()
    arguments = [qgis_process.executable, "run", algorithm, "--json", "--"]
    for name, value in parameters.items():
        values = qgis_process_value(value)
        arguments += [f"{name}={item}" for item in (values if isinstance(values, list) else [values])]
    answer = subprocess.run(
        arguments,
        env=qgis_process.env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size(48 * 1024),
    )
    assert answer.returncode != 0, answer.stdout
    _assert_disk_full_error(qgis_process_message(answer.stdout, answer.stderr), parameters)
    assert_nothing_left(parameters, tmp_path)


def test_read_only_filesystem_is_refused_before_any_work(hostile, run_algorithm, tmp_path):
    """A read-only mount stops root too (unlike chmod): the folder check names it."""
    with small_filesystem(tmp_path / "read_only", PAGE * 16, ",ro") as folder:
        for algorithm, run in RUNS.items():
            parameters = run(hostile, folder)
            with pytest.raises(QgsProcessingException, match=r"is not writable \(Read-only file system\)"):
                run_algorithm(algorithm, parameters)
            assert_nothing_left(parameters, folder)


def test_outputs_of_a_group_appear_together_or_not_at_all(tmp_path):
    from rsdl_qgis_plugin.core.files.atomic_output import AtomicOutputs, leftover_temporaries, public_path

    first, second = tmp_path / "classes.tif", tmp_path / "confidence.tif"
    with pytest.raises(OSError), AtomicOutputs() as outputs:
        outputs.temporary(first).write_bytes(b"complete")
        assert public_path(outputs.temporary(first)) == str(first)
        raise OSError(errno.ENOSPC, "No space left on device")  # the second file fails
    assert not first.exists() and leftover_temporaries(tmp_path) == []
    with AtomicOutputs() as outputs:
        for path in (first, second):
            outputs.temporary(path).write_bytes(path.name.encode())
        assert not first.exists()  # nothing appears before every file is complete
    assert first.read_bytes() == b"classes.tif" and second.read_bytes() == b"confidence.tif"


def test_os_errors_name_the_file_and_the_way_out():
    from rsdl_qgis_plugin.core.errors import os_error_message

    full = os_error_message(
        OSError(errno.ENOSPC, "No space left on device", "/data/.out.rsdl-tmp-1a2b3c4d.json")
    )
    assert "No space left on device" in full and "free disk space" in full
    denied = os_error_message(PermissionError(errno.EACCES, "Permission denied", "/data/out.json"))
    assert "'/data/out.json'" in denied and "writable" in denied


# -- out of memory ----------------------------------------------------------------------------


MEMORY_RUNS: dict[str, Run] = {
    "rsdl:segment": lambda inputs, out: {
        "INPUT": inputs["rgb"],
        "MODEL": inputs.model("fcn_seg.onnx"),
        "TILE_SIZE": 16,
        "BATCH_SIZE": 2,
        "OUTPUT": str(out / "classes.tif"),
        "CONFIDENCE": str(out / "confidence.tif"),
    },
    "rsdl:classifytiles": lambda inputs, out: {
        "INPUT": inputs["rgb"],
        "MODEL": inputs.model("classifier.onnx"),
        "TILE_SIZE": 32,  # at the model's 1 m: 4 tiles, so batches of 1 make 4 calls
        "BATCH_SIZE": 1,
        "OUTPUT": str(out / "tiles.gpkg"),
    },
    "rsdl:classifyfeatures": lambda inputs, out: {
        "INPUT": inputs["invalid"],
        "RASTER": inputs["rgb"],
        "MODEL": inputs.model("classifier.onnx"),
        "BATCH_SIZE": 1,
        "OUTPUT": str(out / "features.gpkg"),
    },
}
# Running out of memory as the plugin meets it: Python's MemoryError from the backend, or
# onnxruntime's own allocation failure from inside the session.
OUT_OF_MEMORY = {
    "MemoryError": (OnnxBackend, "run", MemoryError()),
    "onnxruntime": (
        onnxruntime.InferenceSession,
        "run",
        RuntimeError(
            "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer"
        ),
    ),
}


@pytest.mark.parametrize("error", list(OUT_OF_MEMORY))
@pytest.mark.parametrize("algorithm", list(MEMORY_RUNS))
def test_out_of_memory_in_the_middle_is_reported_and_leaves_nothing(
    algorithm, error, hostile, run_algorithm, tmp_path, monkeypatch
):
    owner, method, failure = OUT_OF_MEMORY[error]
    original = getattr(owner, method)
    calls = []

    def fail_on_the_third_call(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the first call is the probe: this is the second real batch
            raise failure
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, method, fail_on_the_third_call)
    parameters = MEMORY_RUNS[algorithm](hostile, tmp_path)
    guard = InputGuard(hostile)
    with pytest.raises(QgsProcessingException) as refusal:
        run_algorithm(algorithm, parameters)
    message = str(refusal.value)
    assert len(calls) == 3
    model = Path(parameters["MODEL"]).name
    assert f"Out of memory while running the model '{model}'" in message, message
    assert "Lower BATCH_SIZE" in message and "Traceback" not in message
    assert_nothing_left(parameters, tmp_path)
    guard.assert_unchanged()
    json.dumps(message)  # plain text, as qgis_process --json reports it
