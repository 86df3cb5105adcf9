"""Section 3: load and concurrency. Segment tasks running at once in QGIS's task manager give the
outputs of sequential runs; a long batch of runs in one process keeps its memory flat."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsProcessingAlgRunnerTask,
    QgsProcessingContext,
    QgsProcessingFeedback,
)

from tests.robustness.checks import assert_complete
from tests.robustness.inputs import write_raster

BATCH_RUNS = 50
# RSS may grow by allocator caches, onnxruntime arenas and GDAL's block cache, not by outputs:
# measured here: ~6 MiB over 49 runs; keeping every run's model session alive adds ~85 MiB.
RSS_GROWTH_LIMIT = 16 * 2**20


def _segment(raster: Path | str, folder: Path, model: str) -> dict[str, str | int]:
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "INPUT": str(raster),
        "MODEL": model,
        "TILE_SIZE": 32,
        "BATCH_SIZE": 2,
        "OUTPUT": str(folder / "classes.tif"),
        "CONFIDENCE": str(folder / "confidence.tif"),
    }


def _pixels(parameters: dict[str, str | int]) -> list[np.ndarray]:
    return [gdal.Open(str(parameters[name])).ReadAsArray() for name in ("OUTPUT", "CONFIDENCE")]


def test_segment_tasks_at_once_equal_sequential_runs(
    hostile, sample_scene, rsdl_provider, run_algorithm, qtbot, tmp_path
):
    rasters = {
        "scene": sample_scene / "scene.tif",
        "rgb": hostile["rgb"],
        "float32": hostile["float32"],
        "uint16": hostile["uint16"],
    }
    model = hostile.model("fcn_seg.onnx")
    sequential = {}
    for name, raster in rasters.items():
        parameters = _segment(raster, tmp_path / "sequential" / name, model)
        run_algorithm("rsdl:segment", parameters)
        sequential[name] = _pixels(parameters)

    manager = QgsApplication.taskManager()
    finished: dict[str, bool] = {}
    alive = []  # the task manager owns the tasks; algorithms, contexts and feedbacks are ours
    concurrent = {}
    for name, raster in rasters.items():
        parameters = _segment(raster, tmp_path / "concurrent" / name, model)
        algorithm = QgsApplication.processingRegistry().createAlgorithmById("rsdl:segment")
        context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
        task = QgsProcessingAlgRunnerTask(algorithm, parameters, context, feedback)
        task.executed.connect(lambda ok, _results, name=name: finished.__setitem__(name, ok))
        alive.append((algorithm, context, feedback))
        concurrent[name] = parameters
        manager.addTask(task)
    most_at_once = 0

    def all_finished() -> bool:
        nonlocal most_at_once
        most_at_once = max(most_at_once, manager.countActiveTasks())
        return len(finished) == len(rasters)

    qtbot.waitUntil(all_finished, timeout=120_000)
    assert finished == dict.fromkeys(rasters, True)
    assert most_at_once >= 2, "the tasks did not run at the same time"
    for name, parameters in concurrent.items():
        for path in (parameters["OUTPUT"], parameters["CONFIDENCE"]):
            assert_complete(Path(str(path)))
        for together, alone in zip(_pixels(parameters), sequential[name]):
            np.testing.assert_array_equal(together, alone, err_msg=name)


def _rss() -> int:
    """Resident memory of this process in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def test_fifty_runs_keep_memory_flat(hostile, run_algorithm, tmp_path):
    rng = np.random.default_rng(50)
    rasters = [
        write_raster(tmp_path / f"raster_{index:02d}.tif", rng.integers(1, 255, (3, 64, 64)).astype(np.uint8))
        for index in range(BATCH_RUNS)
    ]
    model = hostile.model("fcn_seg.onnx")
    sizes = []
    for index, raster in enumerate(rasters):
        parameters = _segment(raster, tmp_path / f"out_{index:02d}", model)
        run_algorithm("rsdl:segment", parameters)
        assert_complete(Path(str(parameters["OUTPUT"])))
        if index in (0, BATCH_RUNS - 1):  # after the first run has warmed everything up, and at the end
            gc.collect()
            sizes.append(_rss())
    growth = sizes[1] - sizes[0]
    print(f"RSS after run 1: {sizes[0] / 2**20:.1f} MiB, after run {BATCH_RUNS}: {sizes[1] / 2**20:.1f} MiB")
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth / 2**20:.1f} MiB over {BATCH_RUNS - 1} runs"
