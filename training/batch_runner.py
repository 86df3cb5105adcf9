"""Many rasters, many machines: batch prediction in this process or on a Dask cluster.

Each raster is one task that runs ``predict.predict_raster`` (the plugin's tiled engine) on a
worker, exactly as one process would; a giant raster can instead be split into row blocks
(separate tasks, each giving exactly the rows the whole run gives) and a task that stitches them.

* **Where.** In this process (one worker, no scheduler), on a local Dask cluster of ``workers``
  processes (devices given round-robin, ``cuda:K`` pinned with CUDA_VISIBLE_DEVICES), or on the
  cluster of an existing scheduler (``dask scheduler`` with ``dask worker ... --nthreads 1``,
  dask-jobqueue on SLURM/PBS, dask-kubernetes).
* **Models** are loaded once per worker process and kept (``worker_backend``); a worker checks the
  file's SHA-256 against the client's, so a stale copy on one node is refused, not used.
* **GPUs.** With a CUDA device each task asks for the Dask worker resource ``GPU: 1``, so a worker
  never runs two GPU tasks at once; GPU workers offer it (``--resources GPU=1``).
* **Failures.** A refusal (an incompatible raster, a failed write) ends that raster at once: it is
  reported and the others go on. Any other exception is retried ``retries`` times; a task whose
  worker dies runs again elsewhere (Dask's scheduler reschedules it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.files.atomic_output import public_path
from rsdl_qgis_plugin.inference.backends import ModelBackend, load_model
from training.manifest import file_sha256
from training.raster_prediction import PredictionResult, PredictOptions, predict_raster, stitch_blocks

__all__ = [
    "DEFAULT_GDAL_CACHE_MB",
    "DEFAULT_RETRIES",
    "ModelRef",
    "RasterTask",
    "TaskFailure",
    "backend_device",
    "blocks_root",
    "dask_client",
    "run_in_process",
    "run_on_dask",
]

DEFAULT_RETRIES = 2
DEFAULT_GDAL_CACHE_MB = 256  # per worker process: GDAL's default (5% of RAM each) adds up on a node
CONNECT_TIMEOUT_S = 10
WORKER_WAIT_S = 60
BLOCKS_FOLDER = ".{stem}.rsdl-blocks"  # beside the outputs; removed once the blocks are stitched


@dataclass(frozen=True)
class ModelRef:
    """The model a task runs: where every worker finds it, its bytes' hash, and how to load it."""

    path: str
    sha256: str
    device: str  # load_model's: cpu, auto or cuda (a cuda:K worker is pinned to K beforehand)
    threads: int
    gdal_cache_mb: int = DEFAULT_GDAL_CACHE_MB


@dataclass(frozen=True)
class RasterTask:
    """One raster's work: its output folder, and the row blocks it is split into (or none)."""

    raster: Path
    output_dir: Path
    blocks: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class TaskFailure:
    """Why a raster was not predicted (a task's result, so refusals are not retried)."""

    message: str


# -- on a worker --------------------------------------------------------------------------------

_MODELS: dict[ModelRef, ModelBackend] = {}
_LOADS = {"count": 0}
_MODEL_LOCK = threading.Lock()


def worker_backend(ref: ModelRef) -> ModelBackend:
    """The model, loaded on the first task of this process and kept for the next ones."""
    with _MODEL_LOCK:
        backend = _MODELS.get(ref)
        if backend is None:
            seen = file_sha256(ref.path)
            if seen != ref.sha256:
                raise RsdlError(
                    f"The model file '{ref.path}' on this worker is not the one the job was started "
                    f"with (SHA-256 {seen[:12]}..., expected {ref.sha256[:12]}...); give every worker "
                    "the same file."
                )
            backend = load_model(ref.path, ref.threads, ref.device)
            _MODELS.clear()  # one model at a time: a new job's model replaces the last one
            _MODELS[ref] = backend
            _LOADS["count"] += 1
        return backend


def _worker_name() -> str:
    try:
        from distributed import get_worker

        worker = get_worker()
        return str(worker.name if worker.name is not None else worker.address)
    except (ImportError, ValueError):
        return f"local pid {os.getpid()}"


def check_model(ref: ModelRef) -> str | None:
    """On each worker before the job: None when it can load the model, else why not."""
    try:
        worker_backend(ref)
    except (OSError, RsdlError) as error:
        return public_path(f"{type(error).__name__}: {error}" if isinstance(error, OSError) else str(error))
    return None


def _prepare_process(ref: ModelRef) -> None:
    # GDAL reads its cache size once, at the first read of the process: set it before that.
    os.environ.setdefault("GDAL_CACHEMAX", str(ref.gdal_cache_mb))


def run_raster(
    ref: ModelRef,
    raster: Path,
    output_dir: Path,
    options: PredictOptions,
    rows: tuple[int, int] | None = None,
) -> PredictionResult | TaskFailure:
    """A task: predict one raster (or one row block of it). Refusals come back as a TaskFailure
    (retrying cannot help); anything else raises, for the scheduler to retry."""
    _prepare_process(ref)
    try:
        backend = worker_backend(ref)
    except (OSError, RsdlError) as error:
        return TaskFailure(f"The worker {_worker_name()} cannot read the model '{ref.path}': {error}")
    try:
        result = predict_raster(backend, raster, output_dir, options, rows)
    except RsdlError as error:
        return TaskFailure(public_path(str(error)))
    return replace(result, worker=_worker_name(), model_loads=_LOADS["count"])


def blocks_root(task: RasterTask) -> Path:
    """The hidden folder of a split raster's row blocks, beside its outputs."""
    return task.output_dir / BLOCKS_FOLDER.format(stem=task.raster.stem)


def block_folder(task: RasterTask, rows: tuple[int, int]) -> Path:
    return blocks_root(task) / f"rows-{rows[0]:09d}-{rows[1]:09d}"


def run_block(
    ref: ModelRef, task: RasterTask, rows: tuple[int, int], options: PredictOptions
) -> PredictionResult | TaskFailure:
    """A task: one row block of a split raster, into its own folder."""
    folder = block_folder(task, rows)
    folder.mkdir(parents=True, exist_ok=True)
    return run_raster(ref, task.raster, folder, options, rows)


def stitch_task(task: RasterTask, *blocks: PredictionResult | TaskFailure) -> PredictionResult | TaskFailure:
    """A task: join a split raster's blocks into its outputs, then remove the blocks."""
    failures = [block for block in blocks if isinstance(block, TaskFailure)]
    if failures:
        return failures[0]
    first = blocks[0]
    outputs = [replace(output, path=task.output_dir / output.path.name) for output in first.geotiffs]
    stitch_blocks(task.raster, outputs, [block.geotiffs[0].path.parent for block in blocks])
    shutil.rmtree(blocks_root(task), ignore_errors=True)
    counts: dict[str, int] = {}
    for block in blocks:
        for name, value in block.counts.items():
            counts[name] = counts.get(name, 0) + value
    return replace(
        first,
        outputs=tuple(output.path for output in outputs),
        geotiffs=tuple(outputs),
        counts=counts,
        seconds=sum(block.seconds for block in blocks),
        warnings=tuple(dict.fromkeys(warning for block in blocks for warning in block.warnings)),
        worker=", ".join(dict.fromkeys(block.worker for block in blocks)),
    )


# -- in this process ----------------------------------------------------------------------------


def run_in_process(
    ref: ModelRef, tasks: Sequence[RasterTask], options: PredictOptions
) -> Iterator[tuple[RasterTask, PredictionResult | TaskFailure]]:
    """Every task here, one after the other; any exception ends that raster only."""
    for task in tasks:
        try:
            if task.blocks:
                blocks = [run_block(ref, task, rows, options) for rows in task.blocks]
                outcome = stitch_task(task, *blocks)
            else:
                outcome = run_raster(ref, task.raster, task.output_dir, options)
        except Exception as error:
            outcome = TaskFailure(public_path(f"{type(error).__name__}: {error}"))
        yield task, outcome


# -- on a Dask cluster --------------------------------------------------------------------------


def backend_device(device: str) -> str:
    """load_model's device for ours: ``cuda:K`` is ``cuda`` once CUDA_VISIBLE_DEVICES pins K."""
    if device.startswith("cuda:"):
        if not device.split(":", 1)[1].isdigit():
            raise RsdlError(f"Unknown device '{device}'; use cpu, auto, cuda or cuda:N.")
        return "cuda"
    if device not in ("cpu", "auto", "cuda"):
        raise RsdlError(f"Unknown device '{device}'; use cpu, auto, cuda or cuda:N.")
    return device


def _local_cluster(workers: int, devices: Sequence[str], gdal_cache_mb: int) -> Any:
    """``workers`` worker processes on this machine (one task at a time each), devices round-robin."""
    from distributed import Nanny, Scheduler, SpecCluster

    specs = {}
    for index in range(workers):
        device = devices[index % len(devices)]
        env = {"GDAL_CACHEMAX": str(gdal_cache_mb)}
        if device.startswith("cuda:"):
            env["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]  # before CUDA loads there
        options: dict[str, Any] = {
            "nthreads": 1,
            "env": env,
            "name": f"worker-{index}",
            "host": "127.0.0.1",  # a local cluster is nobody else's business
            "silence_logs": logging.ERROR,  # their INFO lines would drown the command's own
        }
        if device.startswith("cuda"):
            options["resources"] = {"GPU": 1}
        specs[f"worker-{index}"] = {"cls": Nanny, "options": options}
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}}
    return SpecCluster(workers=specs, scheduler=scheduler, silence_logs=logging.ERROR)


@contextlib.contextmanager
def dask_client(
    scheduler: str | None, workers: int, devices: Sequence[str], gdal_cache_mb: int = DEFAULT_GDAL_CACHE_MB
) -> Iterator[Any]:
    """A Dask client: of the scheduler at ``scheduler``, else of a local cluster of ``workers``."""
    from distributed import Client

    if scheduler is None:
        with _local_cluster(workers, devices, gdal_cache_mb) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError) as error:
        raise RsdlError(
            f"Cannot reach the Dask scheduler at '{scheduler}' ({error}). Start one with 'dask scheduler' "
            f"and workers with 'dask worker {scheduler} --nthreads 1', check the address and the firewall, "
            "or leave out --scheduler to run a local cluster of --workers processes."
        ) from None
    with client:
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except TimeoutError:
            raise RsdlError(
                f"The Dask scheduler at '{scheduler}' has no workers after {WORKER_WAIT_S} s; start some "
                f"with 'dask worker {scheduler} --nthreads 1'."
            ) from None
        yield client


def _usable_workers(client: Any, ref: ModelRef, gpu: bool) -> list[str]:
    """The workers that can run the job: they offer a GPU when one is needed, and load the model."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    if gpu:
        workers = {address: info for address, info in workers.items() if info.get("resources", {}).get("GPU")}
        if not workers:
            raise RsdlError(
                "No Dask worker offers a GPU, so GPU tasks would wait forever; start the GPU workers "
                "with 'dask worker <scheduler> --nthreads 1 --resources GPU=1', or use --devices cpu."
            )
    problems = client.run(check_model, ref, workers=list(workers))
    usable = [address for address, problem in problems.items() if problem is None]
    if not usable:
        reasons = "; ".join(f"{address}: {problem}" for address, problem in sorted(problems.items()))
        raise RsdlError(
            f"No Dask worker can read the model '{ref.path}' ({reasons}). Put the model where every "
            "worker reads it at the same path (a shared folder), and check it loads here."
        )
    return usable


def run_on_dask(
    client: Any,
    ref: ModelRef,
    tasks: Sequence[RasterTask],
    options: PredictOptions,
    retries: int = DEFAULT_RETRIES,
) -> Iterator[tuple[RasterTask, PredictionResult | TaskFailure]]:
    """Every task on the client's cluster; yields each raster's outcome as it finishes."""
    from distributed import as_completed

    gpu = ref.device == "cuda"
    workers = _usable_workers(client, ref, gpu)
    placement: dict[str, Any] = {"retries": retries, "pure": False, "workers": workers}
    if gpu:
        placement["resources"] = {"GPU": 1}
    finals = {}
    for index, task in enumerate(tasks):
        key = f"predict-{index}-{task.raster.stem}"
        if task.blocks:
            blocks = [
                client.submit(run_block, ref, task, rows, options, key=f"{key}-rows-{rows[0]}", **placement)
                for rows in task.blocks
            ]
            future = client.submit(stitch_task, task, *blocks, key=f"{key}-stitch", **placement)
        else:
            future = client.submit(
                run_raster, ref, task.raster, task.output_dir, options, key=key, **placement
            )
        finals[future] = task
    for future in as_completed(finals):
        task = finals[future]
        if future.status == "error":
            error = future.exception()
            outcome: PredictionResult | TaskFailure = TaskFailure(
                public_path(f"{type(error).__name__}: {error} (after {retries} retries)")
            )
        else:
            outcome = future.result()
        future.release()
        yield task, outcome
