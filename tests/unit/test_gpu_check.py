"""scripts/gpu_check.py (`make gpu-check`): harmless without a GPU, and honest about the provider that ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.gpu_check import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    FIT_MARKER,
    agreement,
    fallback_warning,
    fit_arguments,
    gpu_present,
    loaded_libraries,
    no_gpu_line,
    nvidia_library_dirs,
    parse_fit_report,
    provider_outcome,
    speedup,
    steps_per_second,
)

REPO = Path(__file__).resolve().parents[2]
TENSORRT = "TensorrtExecutionProvider"


def test_without_a_gpu_the_script_says_so_and_exits_0(tmp_path):
    # PATH without nvidia-smi: the no-GPU path even on a machine that has one
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu_check.py")],
        env={**os.environ, "PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    assert lines[0].startswith("gpu-check: no NVIDIA GPU here, nothing measured")
    for checked in ("nvidia-smi not on PATH", "cuda.is_available()", "providers:", "exit 0"):
        assert checked in lines[0]


@pytest.mark.parametrize(
    ("requested", "session", "ran", "fell_back"),
    [
        ([CUDA_PROVIDER, CPU_PROVIDER], [CUDA_PROVIDER, CPU_PROVIDER], CUDA_PROVIDER, False),
        # CUDA libraries missing: onnxruntime drops the provider and runs on the CPU
        ([CUDA_PROVIDER, CPU_PROVIDER], [CPU_PROVIDER], CPU_PROVIDER, True),
        ([CPU_PROVIDER], [CPU_PROVIDER], CPU_PROVIDER, False),
        ([CUDA_PROVIDER], [TENSORRT, CUDA_PROVIDER, CPU_PROVIDER], TENSORRT, True),
        ([CUDA_PROVIDER], [], "none", True),
    ],
)
def test_the_provider_that_ran_is_the_sessions_first(requested, session, ran, fell_back):
    outcome = provider_outcome(requested, session)
    assert outcome.requested == requested[0]
    assert outcome.ran == ran
    assert outcome.fell_back is fell_back


def test_a_fallback_is_reported_loudly_and_a_match_is_not():
    warning = fallback_warning(provider_outcome([CUDA_PROVIDER, CPU_PROVIDER], [CPU_PROVIDER]), "session")
    assert warning is not None and warning.startswith("!!! session:")
    assert f"asked for {CUDA_PROVIDER}" in warning and f"runs on {CPU_PROVIDER}" in warning
    assert (
        fallback_warning(provider_outcome([CUDA_PROVIDER], [CUDA_PROVIDER, CPU_PROVIDER]), "session") is None
    )


@pytest.mark.parametrize(
    ("smi", "torch_cuda", "providers", "present"),
    [
        (None, True, [CUDA_PROVIDER, CPU_PROVIDER], False),  # no nvidia-smi: no NVIDIA GPU
        ("/usr/bin/nvidia-smi", False, [CPU_PROVIDER], False),  # neither torch nor onnxruntime reach it
        ("/usr/bin/nvidia-smi", True, [CPU_PROVIDER], True),  # the CPU onnxruntime: still a GPU to check
        ("/usr/bin/nvidia-smi", False, [CUDA_PROVIDER, CPU_PROVIDER], True),
    ],
)
def test_gpu_present(smi, torch_cuda, providers, present):
    assert gpu_present(smi, torch_cuda, providers) is present


def test_the_no_gpu_line_names_what_was_checked():
    line = no_gpu_line("/usr/bin/nvidia-smi", "torch: no CUDA", "onnxruntime: CPU only")
    assert "no NVIDIA GPU" in line and "nvidia-smi at /usr/bin/nvidia-smi" in line
    assert "torch: no CUDA" in line and "onnxruntime: CPU only" in line


def test_agreement_is_relative_to_the_output_scale():
    assert agreement(5e-4, 1.0)
    assert not agreement(5e-3, 1.0)
    assert agreement(5e-3, 10.0)  # logits of magnitude 10
    assert agreement(0.0, 0.0)


def test_speedup():
    assert speedup(10.0, 250.0) == 25.0
    assert speedup(0.0, 250.0) == 0.0


def test_steps_per_second_leaves_out_the_warmup():
    assert steps_per_second([0.0, 5.0, 6.0, 6.5, 7.0], warmup=2) == pytest.approx(2.0)
    assert steps_per_second([0.0, 1.0, 2.0], warmup=2) is None  # nothing after the warm-up
    assert steps_per_second([1.0, 1.0, 1.0, 1.0], warmup=1) is None


def test_the_fit_report_is_found_among_lightnings_output():
    report = {"accelerator": "CUDAAccelerator", "device": "cuda:0", "step_ends": [1.0, 2.0]}
    output = (
        f"GPU available: True (cuda), used: True\n{FIT_MARKER}{json.dumps(report)}\n`Trainer.fit` stopped\n"
    )
    assert parse_fit_report(output) == report
    assert parse_fit_report("no report here") is None
    assert parse_fit_report(f"{FIT_MARKER}{{not json") is None


def test_fit_arguments_ask_lightning_for_the_device_and_the_steps(tmp_path):
    arguments = fit_arguments("gpu", 30, 8, tmp_path)
    assert arguments[0] == "fit"
    assert "--trainer.accelerator=gpu" in arguments and "--trainer.fast_dev_run=30" in arguments
    assert f"--data.init_args.cache_dir={tmp_path}" in arguments


def test_nvidia_library_dirs_of_the_cuda_13_wheels(tmp_path):
    empty, site = tmp_path / "empty", tmp_path / "site-packages"
    empty.mkdir()
    for folder in ("nvidia/cu13/lib", "nvidia/cudnn/lib"):
        (site / folder).mkdir(parents=True)
    assert nvidia_library_dirs([str(empty), str(site)], 13) == (
        site / "nvidia" / "cu13" / "lib",
        site / "nvidia" / "cudnn" / "lib",
    )
    # CUDA 12's per-library folders are left to onnxruntime.preload_dlls()'s own search
    assert nvidia_library_dirs([str(site)], 12) == (None, site / "nvidia" / "cudnn" / "lib")
    assert nvidia_library_dirs([str(empty)], 13) == (None, None)


def test_loaded_libraries_reads_the_process_maps(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(
        "7f00-7f01 r-xp 00000000 fd:01 1 /site/nvidia/cu13/lib/libcublasLt.so.13\n"
        "7f01-7f02 r--p 00000000 fd:01 1 /site/nvidia/cu13/lib/libcublasLt.so.13\n"
        "7f02-7f03 r-xp 00000000 fd:01 2 /site/nvidia/cudnn/lib/libcudnn.so.9\n"
        "7f03-7f04 r-xp 00000000 fd:01 3 /site/nvidia/cudnn/lib/libcudnn_ops.so.9\n"
        "7f04-7f05 r-xp 00000000 fd:01 4 /usr/lib/libc.so.6\n"
        "7f05-7f06 rw-p 00000000 00:00 0 \n"
    )
    assert loaded_libraries(maps=maps) == [
        "/site/nvidia/cu13/lib/libcublasLt.so.13",
        "/site/nvidia/cudnn/lib/libcudnn.so.9",
    ]
    assert loaded_libraries(maps=tmp_path / "missing") == []
