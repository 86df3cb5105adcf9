"""What the model-running benches share: children measured with ``os.wait4`` (peak RSS) under a
memory guard, waiting for a quiet machine, and the headless QGIS + Processing a child runs rsdl in.

A bench script runs itself as ``--child MODE --result FILE`` (``run_child`` / ``measure`` /
``run_helper`` take the script's path); the child calls ``child_main`` with its table of modes,
which writes the mode's result dict (plus the child's own VmHWM) as JSON and exits at once.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
QGIS_PYTHON_PLUGINS = Path("/usr/share/qgis/python/plugins")
GUARD_MEMORY_SHARE = 0.85  # any child above this share of MemAvailable is killed before the OOM killer
SETTLE_BUSY = 0.10  # "quiet": other processes use less than this share of the CPUs
_KEPT: list[Any] = []  # the child's QgsApplication and provider: they must outlive start_processing


def overlap_percent(tile: int, overlap: int) -> float:
    """rsdl's algorithms take the overlap in percent; check it maps back to exactly ``overlap`` px."""
    percent = overlap * 100.0 / tile
    if round(tile * percent / 100.0) != overlap:
        raise SystemExit(f"--overlap {overlap} px cannot be given exactly as a percentage of {tile} px")
    return percent


def available_mib() -> float:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("MemAvailable not found in /proc/meminfo")


def status_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since exec) of this process, from /proc/self/status."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all CPUs), from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def settle(max_seconds: float) -> float:
    """Wait until other processes leave the CPUs nearly idle for a second; returns the seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < max_seconds:
        before = busy_cpu_seconds()
        time.sleep(1.0)
        if (busy_cpu_seconds() - before) / (os.cpu_count() or 1) < SETTLE_BUSY:
            break
    return time.perf_counter() - start


def add_quiet_options(parser: argparse.ArgumentParser) -> None:
    """--settle, --retries and --wait-budget, which ``measure`` reads."""
    parser.add_argument(
        "--settle",
        type=float,
        default=60.0,
        help="seconds to wait at most, before each run, for other processes to go quiet (0: never)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help="runs again when other processes took over 10%% of the CPUs during a run (best of)",
    )
    parser.add_argument(
        "--wait-budget",
        type=float,
        default=300.0,
        help="seconds in all the bench may wait for quiet; once spent it neither waits nor reruns",
    )


def child_env(work: Path, gdal_cache_mb: int | None) -> dict[str, str]:
    """The environment of every child: headless Qt, a throwaway HOME for QGIS's profile, the repo on
    PYTHONPATH and, unless None, the same GDAL block cache."""
    home = work / "home"
    home.mkdir(mode=0o700)
    env = {
        **os.environ,
        "GDAL_CACHEMAX": str(gdal_cache_mb),
        "QT_QPA_PLATFORM": "offscreen",
        "HOME": str(home),  # QGIS writes its profile here, never into the user's
        "XDG_RUNTIME_DIR": str(home),
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
    }
    if gdal_cache_mb is None:
        del env["GDAL_CACHEMAX"]
    return env


# -- measuring children ----------------------------------------------------------------------------


@dataclass
class Measured:
    seconds: float  # the timed part, as the child reports it
    wall: float  # the whole child process
    peak_mib: float
    result: dict[str, Any]
    other_cpu: float = 0.0  # share of the machine's CPUs other processes used meanwhile
    waited: float = 0.0  # seconds spent waiting for a quiet machine first


def _guard(pid: int, limit_kib: float, done: threading.Event, tripped: threading.Event) -> None:
    """Kill the child before it can push the machine into the OOM killer."""
    while not done.wait(0.2):
        try:
            with open(f"/proc/{pid}/status") as status:
                rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            return
        if rss > limit_kib:
            tripped.set()
            os.kill(pid, signal.SIGKILL)
            return


def run_child(script: Path, mode: str, options: list[str], work: Path, env: dict[str, str]) -> Measured:
    """Run ``script`` as ``--child MODE`` and return its timing and peak RSS (os.wait4)."""
    result_path, log_path = work / f"{mode}.json", work / f"{mode}.log"
    command = [sys.executable, str(script), "--child", mode, "--result", str(result_path)]
    limit_kib = GUARD_MEMORY_SHARE * available_mib() * 1024
    done, tripped = threading.Event(), threading.Event()
    busy_before = busy_cpu_seconds()
    start = time.perf_counter()
    with open(log_path, "wb") as log:  # a file, not a pipe: a chatty child can never block on it
        process = subprocess.Popen([*command, *options], env=env, stdout=log, stderr=subprocess.STDOUT)
    guard = threading.Thread(target=_guard, args=(process.pid, limit_kib, done, tripped), daemon=True)
    guard.start()
    _, status, usage = os.wait4(process.pid, 0)
    done.set()
    wall = time.perf_counter() - start
    others = busy_cpu_seconds() - busy_before - usage.ru_utime - usage.ru_stime
    other_cpu = max(0.0, others) / (wall * (os.cpu_count() or 1))
    process.returncode = os.waitstatus_to_exitcode(status)
    output = log_path.read_text(errors="replace")
    if tripped.is_set():
        raise MemoryError(f"{mode} exceeded the memory guard ({limit_kib / 2**20:.1f} GiB) and was killed")
    if process.returncode != 0 or not result_path.exists():
        raise RuntimeError(f"child {mode} failed ({process.returncode}):\n{output[-4000:]}")
    result = json.loads(result_path.read_text())
    result_path.unlink()
    peak = usage.ru_maxrss / 1024.0
    if peak > result["hwm_mib"] + 16:  # exec records the parent's high-water mark in the child's
        print(f"  warning: {mode} ru_maxrss {peak:.0f} MiB > its own VmHWM {result['hwm_mib']:.0f} MiB")
    return Measured(result["seconds"], wall, peak, result, other_cpu)


def best(values: list[Measured]) -> Measured:
    """The fastest run (other load only ever adds time), with the highest peak memory of all."""
    fastest = min(values, key=lambda m: m.seconds)
    peak = max(m.peak_mib for m in values)
    waited = sum(m.waited for m in values)
    return Measured(fastest.seconds, fastest.wall, peak, fastest.result, fastest.other_cpu, waited)


def measure(
    script: Path, mode: str, options: list[str], work: Path, env: dict[str, str], args: argparse.Namespace
) -> Measured:
    """run_child on a quiet machine: waits for quiet first, and runs again (up to --retries times)
    when other processes took more than SETTLE_BUSY of the CPUs during the run, while
    --wait-budget lasts."""
    attempts: list[Measured] = []
    for attempt in range(args.retries + 1):
        waited = settle(max(0.0, min(args.settle, args.wait_budget)))
        args.wait_budget -= waited  # a busy shared machine must not stretch the bench without end
        attempts.append(run_child(script, mode, options, work, env))
        attempts[-1].waited = waited
        if attempts[-1].other_cpu <= SETTLE_BUSY or args.wait_budget <= 0:
            break
        if attempt < args.retries:
            print(
                f"    {mode}: other processes used {attempts[-1].other_cpu:.0%} of the CPUs; again",
                flush=True,
            )
    return best(attempts)


def run_helper(
    script: Path, mode: str, options: list[str], work: Path, env: dict[str, str]
) -> dict[str, Any]:
    """Run an unmeasured helper child; returns its result."""
    result_path = work / f"{mode}.json"
    command = [sys.executable, str(script), "--child", mode, "--result", str(result_path)]
    done = subprocess.run([*command, *options], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"helper {mode} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-4000:]}"
        )
    result = json.loads(result_path.read_text())
    result_path.unlink()
    return result


# -- in the children --------------------------------------------------------------------------------


def child_main(
    children: dict[str, Callable[[argparse.Namespace], dict[str, Any]]], args: argparse.Namespace
) -> None:
    result = children[args.child](args)
    result["hwm_mib"] = status_mib("VmHWM")
    Path(args.result).write_text(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)  # skip QGIS / torch teardown: it is not part of any measurement


def time_calls(timers: dict[str, list[float]], owner: Any, name: str, label: str) -> None:
    """Wrap ``owner.name`` so that each call adds to ``timers[label]``: [seconds, thread CPU
    seconds, calls]. Bench-only monkeypatching, in a child; the engine's code is untouched."""
    original: Callable[..., Any] = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            entry = timers[label]
            entry[0] += time.perf_counter() - start
            entry[1] += time.thread_time() - cpu
            entry[2] += 1

    setattr(owner, name, timed)


def start_processing() -> Any:
    """A headless QgsApplication with QGIS Processing and rsdl's provider; returns ``processing``."""
    from qgis.core import QgsApplication

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    sys.path.append(str(QGIS_PYTHON_PLUGINS))
    import processing
    from processing.core.Processing import Processing

    from rsdl_qgis_plugin.processing_provider.provider import RsdlProvider

    Processing.initialize()
    provider = RsdlProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    _KEPT.extend((app, provider))
    return processing


def session_and_spec(model: str, threads: int) -> tuple[Any, Any]:
    """An onnxruntime session made as the engine makes it (THREADS=0: the runtime's default)."""
    import onnxruntime

    from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec
    from rsdl_qgis_plugin.inference.backends import onnx_session_options

    options = onnx_session_options(threads)  # the same settings as the engine's, for a like-for-like ratio
    session = onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    return session, ModelSpec.from_metadata(session.get_modelmeta().custom_metadata_map)
