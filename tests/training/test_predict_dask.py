"""Batch prediction on a real Dask cluster: a ``dask scheduler`` and two ``dask worker`` processes
started here on loopback, as an administrator would start them on a cluster's nodes.

The oracle is the single-process run of the same command: the files a cluster writes (split into
row blocks or not) must be byte for byte the ones one process writes, also when a worker is
killed mid-run. The manifest must say what was predicted, skipped and failed, and re-running
must predict only what is missing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.files.atomic_output import TEMP_MARKER, leftover_temporaries
from training.batch_runner import ModelRef, RasterTask, dask_client, run_on_dask
from training.manifest import file_sha256
from training.predict import main
from training.raster_prediction import PredictOptions

REPO = Path(__file__).resolve().parents[2]
CRS = "EPSG:32636"
RASTERS = 20
KILL_RASTERS = 8
START_TIMEOUT = 60


def scene(seed: int, height: int, width: int) -> np.ndarray:
    """Smooth colour fields (several classes, blobs that row blocks cut through) with a nodata corner."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    data = np.stack([128 + 120 * np.sin(rows / (9 + 3 * b) + cols / (13 - 2 * b) + b) for b in range(3)])
    data = np.clip(data + rng.normal(0, 10, data.shape), 1, 255).astype(np.uint8)
    data[:, :18, :26] = 0
    return data


def write_raster(path: Path, data: np.ndarray, x0: float = 455000.0, y0: float = 36000.0) -> Path:
    profile = {"driver": "GTiff", "count": data.shape[0], "height": data.shape[1], "width": data.shape[2]}
    transform = from_origin(x0, y0, 0.5, 0.5)
    with rasterio.open(path, "w", **profile, dtype=data.dtype, crs=CRS, transform=transform, nodata=0) as out:
        out.write(data)
    return path


def predict_args(model: Path, output: Path, *extra: str) -> list[str]:
    tiling = ["--tile-size", "64", "--overlap", "25", "--batch-size", "3", "--threads", "1", "--confidence"]
    return ["--model", str(model), "--output-dir", str(output), *tiling, *extra]


def outputs_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.rglob("*.tif"))}


def read_manifest(folder: Path) -> dict:
    return json.loads((folder / "rsdl_manifest.json").read_text())


class DaskCluster:
    """``dask scheduler`` + ``dask worker`` processes on 127.0.0.1, each a process of its own."""

    def __init__(self, folder: Path, workers: int = 2) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.scheduler_file = folder / "scheduler.json"
        self.env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.scheduler = self._start(
            "dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(self.scheduler_file),
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.scheduler_file.exists():
            if time.monotonic() > deadline or self.scheduler.poll() is not None:
                self.close()
                raise RuntimeError("the dask scheduler did not start")
            time.sleep(0.2)
        self.address = json.loads(self.scheduler_file.read_text())["address"]
        # No nanny: a killed worker stays dead, as a node that fails.
        self.workers = [
            self._start(
                "dask_worker",
                "--scheduler-file",
                str(self.scheduler_file),
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--name",
                f"w{index}",
            )
            for index in range(workers)
        ]
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=START_TIMEOUT)

    def _start(self, program: str, *args: str) -> subprocess.Popen:
        log = open(self.folder / f"{program}-{len(list(self.folder.glob('*.log')))}.log", "w")  # noqa: SIM115
        return subprocess.Popen(
            [sys.executable, "-m", f"distributed.cli.{program}", *args],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def close(self) -> None:
        for process in [*getattr(self, "workers", []), self.scheduler]:
            if process.poll() is None:
                process.terminate()
        for process in [*getattr(self, "workers", []), self.scheduler]:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    running = DaskCluster(tmp_path_factory.mktemp("dask"))
    yield running
    running.close()


@pytest.fixture(scope="module")
def rasters(tmp_path_factory) -> Path:
    """20 small rasters, some taller than the row blocks of the split runs, plus one that fails."""
    folder = tmp_path_factory.mktemp("rasters")
    for index in range(RASTERS):
        height = 150 if index % 4 == 0 else 70 + index
        write_raster(folder / f"r{index:02d}.tif", scene(index, height, 90 + 3 * index))
    return folder


@pytest.fixture(scope="module")
def single_process(rasters, test_models, tmp_path_factory) -> Path:
    """The oracle: every raster in this process, unsplit."""
    output = tmp_path_factory.mktemp("single")
    assert main([str(rasters / "r*.tif"), *predict_args(test_models["fcn_seg.onnx"], output)]) == 0
    return output


def test_two_worker_processes_write_the_files_one_process_writes(
    cluster, rasters, single_process, test_models, tmp_path, capsys
):
    bad = write_raster(tmp_path / "two_bands.tif", scene(99, 70, 70)[:2])
    output = tmp_path / "out"
    scaling = ["--scheduler", cluster.address, "--split-rows", "64"]
    args = predict_args(test_models["fcn_seg.onnx"], output, *scaling)
    assert main([str(rasters / "r*.tif"), str(bad), *args]) == 1  # one raster failed
    captured = capsys.readouterr()
    assert f"FAILED {bad}" in captured.err and "the raster has bands 1 to 2" in captured.err
    assert "Dask dashboard:" in captured.err

    assert outputs_bytes(output) == outputs_bytes(single_process)  # split blocks included
    assert len(outputs_bytes(output)) == 2 * RASTERS
    assert leftover_temporaries(output) == [] and not list(output.glob(".*rsdl-blocks"))
    manifest = read_manifest(output)
    assert sorted(Path(raster).name for raster in manifest["rasters"]) == [
        f"r{index:02d}.tif" for index in range(RASTERS)
    ]
    assert list(manifest["failures"]) == [str(bad)]
    entries = manifest["rasters"].values()
    assert {entry["model_loads"] for entry in entries} == {1}  # once per worker, kept
    assert {worker for entry in entries for worker in entry["worker"].split(", ")} <= {"w0", "w1"}
    assert re.search(rf"^predicted +{RASTERS}$", captured.out, re.MULTILINE)
    assert re.search(r"^failed +1$", captured.out, re.MULTILINE)


def writing(pid: int) -> bool:
    """Whether the process has one of our temporary output files open."""
    try:
        return any(TEMP_MARKER in os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # a descriptor closed while we looked
        return False


def test_a_killed_worker_loses_nothing(test_models, tmp_path):
    """A worker is killed (SIGKILL, no nanny to restart it) while it writes a raster: that raster
    runs again on the other worker and every raster completes once, as one process writes it."""
    rasters = tmp_path / "rasters"
    rasters.mkdir()
    for index in range(KILL_RASTERS):  # big enough that a worker is always inside a task
        write_raster(rasters / f"k{index:02d}.tif", scene(index, 700, 720))
    single = tmp_path / "single"
    assert main([str(rasters / "k*.tif"), *predict_args(test_models["fcn_seg.onnx"], single)]) == 0
    cluster = DaskCluster(tmp_path / "dask")
    try:
        output = tmp_path / "out"
        args = predict_args(test_models["fcn_seg.onnx"], output, "--scheduler", cluster.address)
        run = subprocess.Popen(
            [sys.executable, "-m", "training", "predict", str(rasters / "k*.tif"), *args],
            cwd=REPO,
            env=cluster.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        victim = cluster.workers[0]
        # Kill it once it has written a raster and is writing another: a file of it is open.
        while not (list(output.glob("*_classes.tif")) and writing(victim.pid)) and run.poll() is None:
            assert time.monotonic() < deadline, "the worker never wrote"
            time.sleep(0.01)
        assert run.poll() is None, "the run ended before a worker could be killed"
        victim.send_signal(signal.SIGKILL)
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr
    finally:
        cluster.close()
    assert cluster.workers[0].returncode == -signal.SIGKILL
    # It died writing: its half-written files are found and removed at the end.
    assert "temporary file(s) left by tasks whose worker died" in stderr
    assert outputs_bytes(output) == outputs_bytes(single)
    assert leftover_temporaries(output) == []
    manifest = read_manifest(output)
    assert len(manifest["rasters"]) == KILL_RASTERS and manifest["failures"] == {}
    assert manifest["runs"][-1]["predicted"] == KILL_RASTERS  # each raster completed once
    assert sum(" -> " in line for line in stdout.splitlines()) == KILL_RASTERS


def test_a_run_again_predicts_only_the_missing_outputs(
    rasters, single_process, test_models, tmp_path, capsys
):
    output = tmp_path / "out"
    args = [str(rasters / "r*.tif"), *predict_args(test_models["fcn_seg.onnx"], output)]
    assert main(args) == 0
    first = read_manifest(output)
    (output / "r03_classes.tif").unlink()
    (output / "r11_confidence.tif").unlink()
    capsys.readouterr()
    assert main(args) == 0
    summary = capsys.readouterr().out
    assert summary.count(" -> ") == 2
    assert re.search(r"^predicted +2$", summary, re.MULTILINE)
    assert re.search(rf"^skipped \(complete in the manifest\) +{RASTERS - 2}$", summary, re.MULTILINE)
    second = read_manifest(output)
    run1, run2 = first["runs"][-1]["id"], second["runs"][-1]["id"]
    redone = {Path(r).name for r, entry in second["rasters"].items() if entry["predicted_in_run"] == run2}
    assert redone == {"r03.tif", "r11.tif"}
    assert all(entry["checked_in_run"] == run2 for entry in second["rasters"].values())
    assert {entry["predicted_in_run"] for entry in second["rasters"].values()} == {run1, run2}
    assert (second["runs"][-1]["predicted"], second["runs"][-1]["skipped"]) == (2, RASTERS - 2)
    assert outputs_bytes(output) == outputs_bytes(single_process)

    # Other settings are another prediction: every raster again.
    assert main([*args, "--blend", "mean"]) == 0
    assert read_manifest(output)["runs"][-1]["predicted"] == RASTERS


def test_an_unreachable_scheduler_is_named(rasters, test_models, tmp_path, capsys):
    output = tmp_path / "out"
    args = predict_args(test_models["fcn_seg.onnx"], output, "--scheduler", "tcp://127.0.0.1:9")
    assert main([str(rasters / "r00.tif"), *args]) == 1
    error = capsys.readouterr().err
    assert "Cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'" in error and "dask scheduler" in error
    assert outputs_bytes(output) == {}


def test_a_model_the_workers_cannot_read_is_refused_before_any_task(cluster, rasters, test_models, tmp_path):
    model = test_models["fcn_seg.onnx"]
    tasks = [RasterTask(rasters / "r00.tif", tmp_path)]
    with dask_client(cluster.address, 1, ["cpu"]) as client:
        missing = ModelRef(str(tmp_path / "on_the_laptop_only.onnx"), file_sha256(model), "cpu", 1)
        with pytest.raises(RsdlError, match=r"No Dask worker can read the model .*on_the_laptop_only\.onnx"):
            list(run_on_dask(client, missing, tasks, PredictOptions()))
        stale = ModelRef(str(model), "0" * 64, "cpu", 1)
        with pytest.raises(RsdlError, match="not the one the job was started with"):
            list(run_on_dask(client, stale, tasks, PredictOptions()))
        gpu = ModelRef(str(model), file_sha256(model), "cuda", 1)
        with pytest.raises(RsdlError, match="No Dask worker offers a GPU"):
            list(run_on_dask(client, gpu, tasks, PredictOptions()))
    assert list(tmp_path.iterdir()) == []


def test_row_blocks_equal_the_single_task_in_process(tmp_path, test_models):
    """Blocks of 20 rows over 64 px tiles with 16 px overlap: every block boundary cuts tiles and
    class blobs; regression too (float values, NaN nodata)."""
    raster = write_raster(tmp_path / "tall.tif", scene(7, 211, 97))
    for model in ("fcn_seg.onnx", "fcn_regressor.onnx"):
        whole, split = tmp_path / f"whole-{model}", tmp_path / f"split-{model}"
        assert main([str(raster), *predict_args(test_models[model], whole)]) == 0
        assert main([str(raster), *predict_args(test_models[model], split, "--split-rows", "20")]) == 0
        assert outputs_bytes(split) == outputs_bytes(whole) != {}
        assert sorted(path.name for path in split.iterdir()) == sorted(path.name for path in whole.iterdir())


def test_unexpected_errors_are_retried_and_refusals_are_not(rasters, test_models, tmp_path, monkeypatch):
    """On a cluster of threads in this process (so the task can be patched): an OSError is retried
    --retries times, then reported; a refusal (RsdlError) is reported at once."""
    from distributed import Client

    from training import batch_runner

    calls: dict[str, int] = {}
    real_predict = batch_runner.predict_raster

    def flaky(backend, raster, output_dir, options, rows=None):
        calls[raster.name] = calls.get(raster.name, 0) + 1
        if raster.name == "r01.tif" and calls[raster.name] == 1:
            raise OSError("a network file system hiccup")
        if raster.name == "r02.tif":
            raise OSError("this disk is gone for good")
        if raster.name == "r03.tif":
            raise RsdlError("refused: retrying cannot help")
        return real_predict(backend, raster, output_dir, options, rows)

    monkeypatch.setattr(batch_runner, "predict_raster", flaky)
    model = test_models["fcn_seg.onnx"]
    ref = ModelRef(str(model), file_sha256(model), "cpu", 1)
    tasks = [RasterTask(rasters / f"r0{index}.tif", tmp_path) for index in range(4)]
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        outcomes = {
            task.raster.name: outcome for task, outcome in run_on_dask(client, ref, tasks, PredictOptions())
        }
    assert calls == {"r00.tif": 1, "r01.tif": 2, "r02.tif": 3, "r03.tif": 1}  # retries=2
    assert not isinstance(outcomes["r01.tif"], batch_runner.TaskFailure)
    assert outcomes["r02.tif"].message == "OSError: this disk is gone for good (after 2 retries)"
    assert outcomes["r03.tif"].message == "refused: retrying cannot help"
