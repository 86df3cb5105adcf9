"""`make gpu-check`: does the GPU really run? onnxruntime's CUDA provider, the plugin's backend, Lightning.

On a machine with an NVIDIA GPU it prints, part by part:

1. onnxruntime: the demo model (models/sample_scene_landcover/model.onnx) on 256 px tiles for a
   fixed number of batches on the CPU provider and on CUDAExecutionProvider; the provider that
   actually ran (onnxruntime falls back to the CPU without an error when CUDA libraries are
   missing), tiles per second on each, the speed-up and the largest difference between outputs.
2. The plugin's backend: ``load_model(path, threads, "cuda")`` and its ``.provider``.
3. Lightning: a few real training steps of training/configs/kampala_buildings.yaml (data in
   ../shared/data) through ``python -m training fit`` on the GPU and on the CPU, in steps per
   second, with the device and precision Lightning used.

It exits 1 when a part asked for the GPU and got the CPU, or when the outputs disagree. Without an
NVIDIA GPU it prints one line saying so (and what it checked) and exits 0, so the target is
harmless in CI. The Makefile installs onnxruntime-gpu (same version as the CPU onnxruntime the
venv pins) into its own folder and puts it first on PYTHONPATH; its CUDA and cuDNN libraries come
from the nvidia-* wheels that the CUDA build of torch brings along (``onnxruntime.preload_dlls``).

    .venv/bin/python scripts/gpu_check.py [--batches 20] [--batch-size 8] [--fit-steps 30] [--no-fit]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    # first: the repository holds no onnxruntime, so PYTHONPATH's onnxruntime-gpu still wins
    sys.path.insert(0, str(REPO))

MODEL = REPO / "models" / "sample_scene_landcover" / "model.onnx"
KAMPALA = REPO.parent / "shared" / "data" / "fair_kampala_buildings"
FIT_CONFIG = REPO / "training" / "configs" / "kampala_buildings.yaml"
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
TILE = 256
# Outputs of the CPU and the GPU agree to this, relative to the output's magnitude (at least 1).
TOLERANCE = 1e-3
WARMUP_STEPS = 2  # first training steps left out of the timing (cuDNN set-up, allocator growth)
FIT_WORKER = "_fit_worker"  # argv[1] of the subprocess that runs one fit
FIT_MARKER = "GPU_CHECK_FIT "  # the line through which the fit subprocess reports its timing
CUDA_LIBRARIES = ("libcudart", "libcublas", "libcublasLt", "libcurand", "libcufft", "libnvrtc", "libcudnn")


# -- pure helpers (unit-tested) -----------------------------------------------------------------


@dataclass(frozen=True)
class ProviderOutcome:
    """The provider asked for first, and the one onnxruntime actually runs the session on."""

    requested: str
    ran: str

    @property
    def fell_back(self) -> bool:
        return self.ran != self.requested


def provider_outcome(requested: Sequence[str], session_providers: Sequence[str]) -> ProviderOutcome:
    """What ran: ``session.get_providers()[0]`` after the session was created (not what was asked).

    onnxruntime drops a provider it cannot create (missing CUDA/cuDNN libraries, no driver) with
    only a log line, and the session's provider list then starts with the CPU.
    """
    return ProviderOutcome(
        requested[0] if requested else CPU_PROVIDER, session_providers[0] if session_providers else "none"
    )


def fallback_warning(outcome: ProviderOutcome, what: str) -> str | None:
    """The loud line for a session that asked for one provider and runs on another; None if not."""
    if not outcome.fell_back:
        return None
    return (
        f"!!! {what}: asked for {outcome.requested} but onnxruntime runs on {outcome.ran}. It fell back "
        "silently: the CUDA provider could not load (missing CUDA/cuDNN libraries or no driver; see "
        "onnxruntime's log above). The GPU timings below are CPU timings."
    )


def gpu_present(nvidia_smi: str | None, torch_cuda: bool, ort_providers: Sequence[str]) -> bool:
    """An NVIDIA GPU to check: nvidia-smi on PATH, and torch or onnxruntime can reach CUDA."""
    return nvidia_smi is not None and (torch_cuda or CUDA_PROVIDER in ort_providers)


def no_gpu_line(nvidia_smi: str | None, torch_text: str, ort_text: str) -> str:
    """The single line printed without a GPU: that nothing was measured, and what was looked at."""
    smi = f"nvidia-smi at {nvidia_smi}" if nvidia_smi else "nvidia-smi not on PATH"
    return (
        f"gpu-check: no NVIDIA GPU here, nothing measured (checked: {smi}; {torch_text}; {ort_text}); exit 0."
    )


def agreement(max_difference: float, magnitude: float, tolerance: float = TOLERANCE) -> bool:
    """CPU and GPU outputs agree: the largest difference within tolerance of the output's scale."""
    return max_difference <= tolerance * max(1.0, magnitude)


def speedup(cpu_rate: float, gpu_rate: float) -> float:
    """How many times faster the GPU is (0 when the CPU rate is unknown)."""
    return gpu_rate / cpu_rate if cpu_rate > 0 else 0.0


def steps_per_second(step_ends: Sequence[float], warmup: int = WARMUP_STEPS) -> float | None:
    """Steps per second between the end of the warm-up steps and the end of the last step."""
    if len(step_ends) <= warmup + 1 or warmup < 0:
        return None
    timed = step_ends[warmup:]
    elapsed = timed[-1] - timed[0]
    return (len(timed) - 1) / elapsed if elapsed > 0 else None


def parse_fit_report(output: str) -> dict[str, Any] | None:
    """The fit subprocess's report (the last ``GPU_CHECK_FIT {json}`` line), or None."""
    for line in reversed(output.splitlines()):
        if line.startswith(FIT_MARKER):
            try:
                return json.loads(line[len(FIT_MARKER) :])
            except ValueError:
                return None
    return None


def nvidia_library_dirs(search_paths: Iterable[str], cuda_major: int) -> tuple[Path | None, Path | None]:
    """The CUDA and cuDNN library folders of the nvidia-* wheels (torch's) on the search paths.

    CUDA 13 wheels put every CUDA library in one ``nvidia/cu13/lib``; cuDNN stays in
    ``nvidia/cudnn/lib``. Only that layout is looked for: CUDA 12's per-library folders are left
    to ``onnxruntime.preload_dlls()``'s own search.
    """
    cuda = cudnn = None
    for entry in search_paths:
        root = Path(entry or ".") / "nvidia"
        if cuda is None and cuda_major >= 13 and (root / f"cu{cuda_major}" / "lib").is_dir():
            cuda = root / f"cu{cuda_major}" / "lib"
        if cudnn is None and (root / "cudnn" / "lib").is_dir():
            cudnn = root / "cudnn" / "lib"
    return cuda, cudnn


def loaded_libraries(
    names: Sequence[str] = CUDA_LIBRARIES, maps: Path = Path("/proc/self/maps")
) -> list[str]:
    """The files of this process's loaded libraries whose names start with one of ``names``."""
    try:
        lines = maps.read_text().splitlines()
    except OSError:
        return []
    files = {line.split()[-1] for line in lines if "/" in line}
    return sorted(path for path in files if Path(path).name.split(".so")[0] in names)


# -- probing ------------------------------------------------------------------------------------


@dataclass
class Environment:
    nvidia_smi: str | None = None
    gpu_names: str = ""
    torch_cuda: bool = False
    torch_text: str = "torch not checked"
    ort: Any = None
    ort_providers: list[str] = field(default_factory=list)
    ort_text: str = "onnxruntime not checked"


def probe() -> Environment:
    """What this machine offers: nvidia-smi, torch's CUDA, onnxruntime's providers (cheap checks)."""
    env = Environment(nvidia_smi=shutil.which("nvidia-smi"))
    if env.nvidia_smi:
        try:
            env.gpu_names = subprocess.run(
                [env.nvidia_smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError) as error:
            env.gpu_names = f"nvidia-smi failed: {error}"
    try:
        import onnxruntime as ort

        env.ort = ort
        env.ort_providers = list(ort.get_available_providers())
        package = getattr(ort, "package_name", "onnxruntime")
        cuda = getattr(ort, "cuda_version", "") or "none"
        env.ort_text = (
            f"{package} {ort.__version__} (CUDA build {cuda}) providers: {', '.join(env.ort_providers)}"
        )
    except ImportError as error:
        env.ort_text = f"onnxruntime not importable ({error})"
    try:
        import torch

        env.torch_cuda = bool(torch.cuda.is_available())
        env.torch_text = (
            f"torch {torch.__version__} (CUDA build {torch.version.cuda}) "
            f"cuda.is_available() = {env.torch_cuda}"
        )
    except ImportError as error:
        env.torch_text = f"torch not importable ({error})"
    return env


def preload_cuda(ort: Any) -> str:
    """Load the CUDA/cuDNN libraries onnxruntime-gpu needs from torch's nvidia-* wheels.

    onnxruntime-gpu lives in its own folder (see the Makefile), so ``preload_dlls()``'s default
    search (the ``nvidia`` folder beside onnxruntime) misses the venv's; each folder is named.
    """
    if not hasattr(ort, "preload_dlls"):
        return "onnxruntime has no preload_dlls (< 1.19): CUDA libraries must be on the loader's path"
    version = getattr(ort, "cuda_version", "") or ""
    if not version:
        return "this onnxruntime is a CPU build: nothing to preload"
    cuda_dir, cudnn_dir = nvidia_library_dirs(sys.path, int(version.split(".")[0]))
    if cuda_dir is None and cudnn_dir is None:
        ort.preload_dlls()
    else:
        if cuda_dir is not None:
            ort.preload_dlls(cuda=True, cudnn=False, directory=str(cuda_dir))
        if cudnn_dir is not None:
            ort.preload_dlls(cuda=False, cudnn=True, directory=str(cudnn_dir))
    folders: dict[str, list[str]] = {}
    for library in loaded_libraries():
        folders.setdefault(str(Path(library).parent), []).append(Path(library).name)
    if not folders:
        return "none of " + ", ".join(CUDA_LIBRARIES) + " is loaded"
    return "; ".join(f"{', '.join(names)} from {folder}" for folder, names in folders.items())


# -- 1. onnxruntime ------------------------------------------------------------------------------


def time_session(session: Any, batch: Any, batches: int) -> tuple[float, Any]:
    """Tiles per second over ``batches`` runs after one warm-up run, and the last output."""
    name = session.get_inputs()[0].name
    session.run(None, {name: batch})  # warm-up: cuDNN algorithm search, memory arena
    start = time.perf_counter()
    for _ in range(batches):
        output = session.run(None, {name: batch})[0]
    elapsed = time.perf_counter() - start
    return batches * len(batch) / elapsed, output


def check_onnxruntime(ort: Any, batches: int, batch_size: int, problems: list[str]) -> Any:
    """Part 1: the demo model on the CPU and the CUDA providers. Returns the test batch."""
    import numpy as np

    from rsdl_qgis_plugin.inference.backends import onnx_session_options

    shape = f"{batch_size} x 3 x {TILE} x {TILE}"
    print(f"\n== 1. onnxruntime: {MODEL.relative_to(REPO)}, {batches} batches of {shape}")
    print(f"onnxruntime {ort.__version__} from {Path(ort.__file__).parent}")
    batch = np.random.default_rng(0).standard_normal((batch_size, 3, TILE, TILE)).astype(np.float32)
    sessions: dict[str, Any] = {}
    rates: dict[str, float] = {}
    outputs: dict[str, Any] = {}
    for label, providers in (("CPU", [CPU_PROVIDER]), ("CUDA", [CUDA_PROVIDER, CPU_PROVIDER])):
        session = ort.InferenceSession(str(MODEL), sess_options=onnx_session_options(), providers=providers)
        outcome = provider_outcome(providers, session.get_providers())
        warning = fallback_warning(outcome, f"onnxruntime session ({label})")
        rates[label], outputs[label] = time_session(session, batch, batches)
        print(f"{label:>4}: asked for {outcome.requested}, ran on {outcome.ran}: {rates[label]:8.1f} tiles/s")
        if warning:
            print(warning)
            problems.append(f"onnxruntime: asked for {outcome.requested}, ran on {outcome.ran}")
        sessions[label] = session
    print(f"speed-up CUDA / CPU: {speedup(rates['CPU'], rates['CUDA']):.1f}x")
    magnitude = float(np.abs(outputs["CPU"]).max())
    difference = float(np.abs(outputs["CPU"] - outputs["CUDA"]).max())
    print(
        f"max |CPU - CUDA| = {difference:.2e} "
        f"(outputs up to {magnitude:.2f}; tolerance {TOLERANCE:g} x scale)"
    )
    if not agreement(difference, magnitude) and sessions["CUDA"].get_providers()[0] == CUDA_PROVIDER:
        # CUDA EP runs float32 convolutions in TF32 by default on Ampere and newer; compare without it.
        strict = ort.InferenceSession(
            str(MODEL),
            sess_options=onnx_session_options(),
            providers=[(CUDA_PROVIDER, {"use_tf32": "0"}), CPU_PROVIDER],
        )
        strict_output = strict.run(None, {strict.get_inputs()[0].name: batch})[0]
        difference = float(np.abs(outputs["CPU"] - strict_output).max())
        print(f"max |CPU - CUDA| with use_tf32=0 = {difference:.2e} (the default uses TF32 tensor cores)")
    if not agreement(difference, magnitude):
        print(f"!!! CPU and CUDA outputs disagree by {difference:.2e}")
        problems.append(f"onnxruntime: CPU and CUDA outputs differ by {difference:.2e}")
    return batch


# -- 2. the plugin's backend --------------------------------------------------------------------


def check_backend(batch: Any, problems: list[str]) -> None:
    """Part 2: ``load_model(path, threads, "cuda")`` as the plugin's algorithms call it."""
    import numpy as np

    from rsdl_qgis_plugin.core.errors import ModelError
    from rsdl_qgis_plugin.inference.backends import load_model

    print('\n== 2. the plugin\'s backend: load_model(model, 0, "cuda")')
    try:
        backend = load_model(MODEL, 0, "cuda")
    except ModelError as error:
        print(f"!!! load_model refused the GPU: {error}")
        problems.append("plugin backend: load_model(..., 'cuda') failed")
        return
    print(f"backend.provider = {backend.provider}")
    if backend.provider != CUDA_PROVIDER:
        print(f"!!! the plugin asked for CUDA and runs on {backend.provider} (onnxruntime fell back)")
        problems.append(f"plugin backend: runs on {backend.provider}")
    reference = load_model(MODEL, 0, "cpu").run(batch)[0]
    difference = float(np.abs(backend.run(batch)[0] - reference).max())
    print(f"max |device 'cpu' - device 'cuda'| on one batch = {difference:.2e}")


# -- 3. Lightning --------------------------------------------------------------------------------


def fit_arguments(accelerator: str, steps: int, batch_size: int, cache_dir: Path) -> list[str]:
    """``python -m training fit`` arguments for ``steps`` training steps of the Kampala config."""
    return [
        "fit",
        "--config",
        str(FIT_CONFIG),
        f"--data.init_args.raster={KAMPALA / 'tiles' / 'OAM-*.tif'}",
        f"--data.init_args.labels={KAMPALA / 'buildings.geojson'}",
        # 128 px chips with a 64 px stride: enough chips in the 126 tiles for the steps asked for
        "--data.init_args.chip_size=128",
        "--data.init_args.stride=64",
        f"--data.init_args.batch_size={batch_size}",
        "--data.init_args.num_workers=2",
        f"--data.init_args.cache_dir={cache_dir}",
        f"--trainer.accelerator={accelerator}",
        "--trainer.devices=1",
        # N training and N validation batches, no logs or checkpoints written
        f"--trainer.fast_dev_run={steps}",
        "--trainer.enable_progress_bar=false",
    ]


def run_fit(accelerator: str, steps: int, batch_size: int, cache_dir: Path, work: Path) -> dict[str, Any]:
    """One fit in a subprocess (as a user runs it); its timing report, or an ``error``."""
    command = [sys.executable, str(Path(__file__).resolve()), FIT_WORKER]
    command += fit_arguments(accelerator, steps, batch_size, cache_dir)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=1800)
    output = result.stdout + result.stderr
    report = parse_fit_report(result.stdout)
    if result.returncode != 0 or report is None:
        return {"error": f"exit {result.returncode}", "output": output[-3000:]}
    report["wall_s"] = time.perf_counter() - started
    return report


def check_lightning(gpu_steps: int, cpu_steps: int, batch_size: int, problems: list[str]) -> None:
    """Part 3: a few training steps on the GPU and on the CPU through ``python -m training fit``."""
    config = FIT_CONFIG.relative_to(REPO)
    print(f"\n== 3. Lightning: python -m training fit --config {config}, batch {batch_size}")
    if not KAMPALA.is_dir():
        print(f"skipped: the real data is not at {KAMPALA}")
        return
    rates = {}
    with tempfile.TemporaryDirectory(prefix="rsdl-gpu-check-") as folder:
        work = Path(folder)
        for accelerator, steps in (("gpu", gpu_steps), ("cpu", cpu_steps)):
            report = run_fit(accelerator, steps, batch_size, work / "cache", work)
            if "error" in report:
                print(f"{accelerator}: the fit failed ({report['error']}):\n{report['output']}")
                problems.append(f"Lightning fit on {accelerator} failed")
                continue
            rate = steps_per_second(report["step_ends"])
            rates[accelerator] = rate or 0.0
            rate_text = (
                f"{rate:.2f} steps/s ({rate * batch_size:.1f} chips/s)" if rate else "too few steps to time"
            )
            print(
                f"{accelerator:>4}: Lightning used {report['accelerator']} on {report['device']}"
                f"{' (' + report['device_name'] + ')' if report.get('device_name') else ''}, precision "
                f"{report['precision']}: {len(report['step_ends'])} steps, {rate_text}, "
                f"{report['wall_s']:.0f} s in all"
            )
            if accelerator == "gpu" and not str(report["device"]).startswith("cuda"):
                print(f"!!! asked Lightning for the GPU and it trained on {report['device']}")
                problems.append(f"Lightning: trained on {report['device']}")
    if rates.get("gpu") and rates.get("cpu"):
        ratio = speedup(rates["cpu"], rates["gpu"])
        print(f"speed-up GPU / CPU: {ratio:.1f}x (steps after {WARMUP_STEPS} warm-up steps)")


def fit_worker(argv: list[str]) -> int:
    """The fit subprocess: ``python -m training`` with a callback that times each training step."""
    import torch
    from lightning.pytorch.callbacks import Callback

    from training import cli

    class StepTimer(Callback):
        def __init__(self) -> None:
            self.ends: list[float] = []
            self.info: dict[str, Any] = {}

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            device = trainer.strategy.root_device
            self.info = {
                "accelerator": type(trainer.accelerator).__name__,
                "device": str(device),
                "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "",
                "precision": str(trainer.precision),
            }

        def on_train_batch_end(
            self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
        ) -> None:
            if trainer.strategy.root_device.type == "cuda":
                torch.cuda.synchronize()  # CUDA runs asynchronously: time finished work only
            self.ends.append(time.perf_counter())

    timer = StepTimer()
    # trainer_defaults' callbacks are added to the configured ones (LightningCLI), so the fit is
    # the user's fit plus this timer.
    cli.TRAINER_DEFAULTS = {**cli.TRAINER_DEFAULTS, "callbacks": [timer]}
    code = cli.main(argv)
    print(FIT_MARKER + json.dumps({**timer.info, "step_ends": timer.ends}), flush=True)
    return code


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [FIT_WORKER]:
        return fit_worker(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=20, help="onnxruntime batches timed per provider")
    parser.add_argument("--batch-size", type=int, default=8, help="tiles per onnxruntime batch")
    parser.add_argument(
        "--fit-steps", type=int, default=30, help="training steps on the GPU (the CPU runs 6)"
    )
    parser.add_argument("--fit-batch-size", type=int, default=8, help="chips per training batch")
    parser.add_argument("--no-fit", action="store_true", help="skip the Lightning part")
    parser.add_argument(
        "--even-without-gpu", action="store_true", help="run every part without a GPU (to see the fallbacks)"
    )
    args = parser.parse_args(argv)

    env = probe()
    if not gpu_present(env.nvidia_smi, env.torch_cuda, env.ort_providers) and not args.even_without_gpu:
        print(no_gpu_line(env.nvidia_smi, env.torch_text, env.ort_text))
        return 0
    print(f"gpu-check: {env.gpu_names or 'no GPU reported by nvidia-smi'}")
    print(env.torch_text)
    print(env.ort_text)
    problems: list[str] = []
    if env.ort is None:
        problems.append("onnxruntime is not importable")
    else:
        if CUDA_PROVIDER not in env.ort_providers:
            package = getattr(env.ort, "package_name", "onnxruntime")
            print(
                f"!!! this onnxruntime ({package}) has no CUDA provider: install onnxruntime-gpu of "
                "the same version (make gpu-check puts it in .venv/ort-gpu)"
            )
            problems.append("onnxruntime has no CUDA provider")
        print(f"preload_dlls: {preload_cuda(env.ort)}")
        batch = check_onnxruntime(env.ort, args.batches, args.batch_size, problems)
        check_backend(batch, problems)
    if not args.no_fit:
        check_lightning(args.fit_steps, min(6, args.fit_steps), args.fit_batch_size, problems)
    print()
    if problems:
        print("gpu-check: FAILED: " + "; ".join(problems))
        return 1
    print("gpu-check: OK: onnxruntime, the plugin's backend and Lightning ran on the GPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
