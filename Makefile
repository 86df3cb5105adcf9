# rsdl: one entry point for install, test, demo, lint, bench, zip and deploy.
# On a fresh Debian machine `make demo` and `make test` are all a newcomer types:
# both install what is missing first.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
PY          := $(VENV)/bin/python
SYSTEM_PY   := /usr/bin/python3
APT_PACKAGES := qgis python3-qgis qgis-providers python3-matplotlib python3-venv gdal-bin xvfb xauth make
REQUIREMENTS := $(wildcard requirements/*.txt)
INSTALL_STAMP := $(VENV)/.rsdl-installed
DIST        := dist
PLUGIN_ZIP  := $(DIST)/rsdl_qgis_plugin.zip
QGIS_PROFILE ?= default
QGIS_PLUGINS_DIR ?= $(HOME)/.local/share/QGIS/QGIS3/profiles/$(QGIS_PROFILE)/python/plugins
DEMO_DIR    ?= demo_output
# make demo on your own data: DATA=raster MODEL=model.onnx [LABELS="a.gpkg b.gpkg|layername=x"] [LABEL_FIELD=class]
# [LABEL_NAME_FIELD=name] [SPARSE_LABELS=1: outside the labels is unknown, not background]
DATA        ?=
MODEL       ?=
LABELS      ?=
LABEL_FIELD ?=
LABEL_NAME_FIELD ?=
SPARSE_LABELS ?=
PYTEST_ARGS ?=
# The QGIS version matrix: each version runs the QGIS-facing suites in a Debian chroot (needs root).
# MATRIX= skips it; CHROOTS is where the chroots are built once and kept.
MATRIX      ?= 3.40 3.44
MATRIX_SUITES := tests/unit tests/qgis tests/e2e tests/robustness tests/desktop
# 3.44 also runs the training suite: Python 3.13 and numpy 2 for training too (about a minute).
MATRIX_SUITES_3.44 := $(MATRIX_SUITES) tests/training
MATRIX_PYTEST_ARGS ?= $(or $(MATRIX_SUITES_$*),$(MATRIX_SUITES))
CHROOTS     ?= $(HOME)/.cache/rsdl-chroots
CHROOT_VENV := /opt/rsdl-venv
# Building and entering a chroot needs root: sudo for other users.
AS_ROOT     := $(if $(filter 0,$(shell id -u)),,sudo)
# Both chroots are Debian 13 with the same Python 3.13 and numpy: they share one venv (about 6 GB
# with torch), kept in CHROOTS and mounted at CHROOT_VENV; each sees its own QGIS through
# --system-site-packages.
CHROOT_ENTER = $(AS_ROOT) scripts/chroot_run.sh --bind $(CHROOTS)/venv-trixie:$(CHROOT_VENV) $(CHROOTS)/qgis-$*
# What every qgis_process run wrote, per version, compared across versions by `make test`.
MATRIX_OUTPUTS := $(CURDIR)/.matrix-outputs
CHROOT_SUITE_3.40 := trixie
CHROOT_SUITE_3.44 := trixie-backports
# Debian's own onnxruntime, the no-pip install path (tests/e2e/test_debian_onnxruntime.py), on 3.40
# only: 3.44 keeps a bare system Python for tests/e2e/test_missing_dependencies.py.
CHROOT_EXTRA_APT_3.40 := python3-onnxruntime
# The host's Debian mirror (the first non-security "debian" URI in its apt sources).
DEBIAN_MIRROR ?= $(or $(shell grep -rhoE 'https?://[^ ]+/debian/?( |$$)' /etc/apt/sources.list \
  /etc/apt/sources.list.d 2>/dev/null | head -n1 | tr -d ' '),http://deb.debian.org/debian)

export QT_QPA_PLATFORM ?= offscreen

.PHONY: help install apt-packages test test-here test-unit test-matrix compare-matrix demo lint bench gpu-check zip deploy clean
# Pattern targets that are no files: never delete them as intermediates.
.PRECIOUS: chroot-%

help: ## List the targets
	@grep -E '^[a-z%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

apt-packages: ## Install QGIS, GDAL and Xvfb from Debian packages when any is missing
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends \
	    $$missing >/dev/null; \
	fi

# The constraints follow the system numpy that Debian's GDAL bindings are built against: numpy 1.x
# on Debian 12, 2.x on Debian 13 and newer.
$(INSTALL_STAMP): $(REQUIREMENTS) Makefile
	@$(MAKE) --no-print-directory apt-packages
	@test -x $(PY) || $(SYSTEM_PY) -m venv --system-site-packages $(VENV)
	numpy_major=$$($(SYSTEM_PY) -c 'import numpy; print(numpy.__version__.split(".")[0])') && \
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements/constraints-numpy$$numpy_major.txt \
	  -r requirements/dev.txt -r requirements/plugin.txt -r requirements/ml.txt -r requirements/training.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/toolbelt.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade --target $(VENV)/pyqt6 -r requirements/qt6-check.txt
	@touch $@

install: ## Install apt packages, the .venv and pinned pip packages (idempotent, seconds when done)
	@$(MAKE) --no-print-directory apt-packages
	@$(MAKE) --no-print-directory --silent $(INSTALL_STAMP) >/dev/null
	@echo "install: up to date ($(VENV), QGIS $$($(SYSTEM_PY) -c 'from qgis.core import Qgis; print(Qgis.QGIS_VERSION)'))"

test: install ## Every test here (QGIS 3.22 on Debian 12), then the QGIS-facing suites on QGIS 3.40 and 3.44 (MATRIX=)
	@status=0; $(MAKE) --no-print-directory test-here || status=1; \
	for version in $(MATRIX); do $(MAKE) --no-print-directory test-qgis-$$version || status=1; done; \
	if [ -n "$(strip $(MATRIX))" ]; then $(MAKE) --no-print-directory compare-matrix || status=1; fi; \
	exit $$status

test-here: install ## Every test with this machine's QGIS: unit, QGIS (pytest-qgis), qgis_process, robustness, training, desktop
	@rm -rf $(MATRIX_OUTPUTS)/here
	RSDL_OUTPUT_ARCHIVE=$(MATRIX_OUTPUTS)/here $(PY) -m pytest $(PYTEST_ARGS)

test-unit: install ## The fast tests: QGIS-free units and the import contracts (tests/unit, under a minute)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-matrix: ## Only the QGIS version matrix: the QGIS-facing suites in each chroot of MATRIX
	@status=0; for version in $(MATRIX); do $(MAKE) --no-print-directory test-qgis-$$version || status=1; done; \
	exit $$status

compare-matrix: ## Compare what the qgis_process runs wrote here and on each QGIS of MATRIX (after the tests)
	$(PY) scripts/matrix_outputs.py compare $(MATRIX_OUTPUTS)/here $(foreach version,$(MATRIX),$(MATRIX_OUTPUTS)/$(version))

test-qgis-%: chroot-% ## The QGIS-facing suites on QGIS % (3.40, 3.44) in its chroot (MATRIX_PYTEST_ARGS=...)
	@echo "== QGIS $* ($(CHROOT_SUITE_$*)): pytest $(MATRIX_PYTEST_ARGS)"
	@start=$$(date +%s); status=0; $(AS_ROOT) rm -rf $(MATRIX_OUTPUTS)/$*; \
	$(CHROOT_ENTER) env VENV=$(CHROOT_VENV) RSDL_OUTPUT_ARCHIVE=$(MATRIX_OUTPUTS)/$* \
	  $(CHROOT_VENV)/bin/python -m pytest $(MATRIX_PYTEST_ARGS) || status=$$?; \
	echo "== QGIS $*: pytest exit $$status after $$(( $$(date +%s) - start )) s"; exit $$status

# A chroot: debootstrap once (kept in CHROOTS), then `make install` inside it, exactly as on a
# Debian host (apt packages, the venv, constraints for its numpy). QGIS 3.44 comes from
# trixie-backports, pinned for the QGIS packages only. apt accepts Release files past their
# Valid-Until (backports and updates carry one week): a test fixture must not fail because the
# mirror lags (this workplace's mirror served forky's a month stale).
chroot-%: ## Build or update the Debian chroot with QGIS % (3.40: trixie, 3.44: trixie-backports)
	@test -n "$(CHROOT_SUITE_$*)" || { echo "No chroot for QGIS $*; choose from 3.40 3.44." >&2; exit 2; }
	@set -euo pipefail; root=$(CHROOTS)/qgis-$*; \
	if [ ! -f $$root/.rsdl-chroot ]; then \
	  command -v debootstrap >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq debootstrap; }; \
	  if findmnt -rno TARGET | grep -q "^$$root"; then echo "$$root has mounts; not touching it." >&2; exit 1; fi; \
	  $(AS_ROOT) rm -rf $$root; mkdir -p $(CHROOTS); start=$$(date +%s); \
	  echo "debootstrap trixie into $$root from $(DEBIAN_MIRROR)"; \
	  $(AS_ROOT) debootstrap --variant=minbase --include=make,ca-certificates trixie $$root $(DEBIAN_MIRROR) >$$root.log 2>&1 \
	    || { tail -n 20 $$root.log; exit 1; }; \
	  printf 'deb %s trixie main\ndeb %s trixie-updates main\n' $(DEBIAN_MIRROR) $(DEBIAN_MIRROR) \
	    | $(AS_ROOT) tee $$root/etc/apt/sources.list >/dev/null; \
	  echo 'Acquire::Check-Valid-Until "false";' | $(AS_ROOT) tee $$root/etc/apt/apt.conf.d/99rsdl-mirror >/dev/null; \
	  if [ "$(CHROOT_SUITE_$*)" = trixie-backports ]; then \
	    echo "deb $(DEBIAN_MIRROR) trixie-backports main" | $(AS_ROOT) tee -a $$root/etc/apt/sources.list >/dev/null; \
	    printf 'Package: qgis qgis-* libqgis* python3-qgis python3-qgis-*\nPin: release n=trixie-backports\nPin-Priority: 990\n' \
	      | $(AS_ROOT) tee $$root/etc/apt/preferences.d/qgis-backports >/dev/null; \
	  fi; \
	  $(AS_ROOT) touch $$root/.rsdl-chroot; echo "debootstrap: $$(( $$(date +%s) - start )) s"; \
	fi; \
	start=$$(date +%s); \
	$(CHROOT_ENTER) env VENV=$(CHROOT_VENV) make --no-print-directory install; \
	if [ -n "$(CHROOT_EXTRA_APT_$*)" ]; then $(CHROOT_ENTER) \
	  apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends $(CHROOT_EXTRA_APT_$*) >/dev/null; fi; \
	echo "chroot QGIS $*: install $$(( $$(date +%s) - start )) s, $$(du -sh $$root | cut -f1) on disk"

demo: install ## A model end to end on a sample scene: segment, rasterize labels, evaluate, PNG map (own data: DATA=raster MODEL=model.onnx LABELS=vectors LABEL_FIELD=field LABEL_NAME_FIELD=field SPARSE_LABELS=1; DEMO_DIR=...)
	$(PY) scripts/demo.py '$(DEMO_DIR)' $(if $(DATA),--data '$(DATA)') $(if $(MODEL),--model '$(MODEL)') \
	  $(foreach source,$(LABELS),--labels '$(source)') $(if $(LABEL_FIELD),--field '$(LABEL_FIELD)') \
	  $(if $(LABEL_NAME_FIELD),--name-field '$(LABEL_NAME_FIELD)') $(if $(SPARSE_LABELS),--sparse)

lint: install ## ruff lint and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: install ## Benchmarks: rasterize vs gdal_rasterize, segment vs onnxruntime/toolbelt with a tiny net and the demo U-Net, detect vs onnxruntime with a small YOLO-like net, one giant raster through segment with the demo U-Net vs onnxruntime plus its memory with GDAL's default cache vs 128 MB at 16384 px, predict in one process vs a local Dask cluster (throughput, per-task overhead, memory against height) (the giant raster alone: about an hour on 2 cores, ~0.7 GiB in the temp folder) (BENCH_SIZES=..., INFER_SIZES=4000,8000,16000, DETECT_SIZES=4000,16000, GIANT_SIZE=40000)
	$(PY) tests/bench/bench_rasterize.py $(if $(BENCH_SIZES),--sizes $(BENCH_SIZES))
	$(PY) tests/bench/bench_inference.py $(if $(INFER_SIZES),--sizes $(INFER_SIZES))
	$(PY) tests/bench/bench_inference.py --sizes 16000 --toolbelt-max 0 \
	  --model-file models/sample_scene_landcover/model.onnx
	$(PY) tests/bench/bench_detect.py $(if $(DETECT_SIZES),--sizes $(DETECT_SIZES))
	$(PY) tests/bench/bench_giant.py $(if $(GIANT_SIZE),--size $(GIANT_SIZE))
	$(PY) tests/bench/bench_batch.py

# gpu-check: onnxruntime-gpu of the version requirements/ml.txt pins for the CPU onnxruntime, in a folder
# of its own that only gpu-check puts first on PYTHONPATH (the venv keeps the CPU build), installed only
# where nvidia-smi exists. --no-deps: its requirements are the CPU build's, already in the venv. Its
# CUDA 13 and cuDNN 9 libraries come from the nvidia-* wheels of the venv's CUDA build of torch.
ORT_GPU_DIR := $(VENV)/ort-gpu
ORT_VERSION = $(shell sed -nE 's/^onnxruntime==([0-9][^ ;#]*).*/\1/p' requirements/ml.txt)
GPU_CHECK_ARGS ?=

gpu-check: install ## On an NVIDIA GPU: onnxruntime CUDA vs CPU, the plugin's backend, a short Lightning fit (GPU_CHECK_ARGS=--no-fit); without one, says so and exits 0
	@if command -v nvidia-smi >/dev/null 2>&1 && [ ! -d $(ORT_GPU_DIR)/onnxruntime_gpu-$(ORT_VERSION).dist-info ]; then \
	  echo "Installing onnxruntime-gpu==$(ORT_VERSION) into $(ORT_GPU_DIR)"; \
	  $(PY) -m pip install --quiet --disable-pip-version-check --no-deps --upgrade --target $(ORT_GPU_DIR) \
	    onnxruntime-gpu==$(ORT_VERSION) || echo "gpu-check: onnxruntime-gpu did not install; the check will say so"; \
	fi
	PYTHONPATH=$(abspath $(ORT_GPU_DIR))$${PYTHONPATH:+:$$PYTHONPATH} $(PY) scripts/gpu_check.py $(GPU_CHECK_ARGS)

zip: install ## Build the installable plugin zip in dist/
	$(PY) scripts/build_plugin.py zip $(PLUGIN_ZIP)

deploy: install ## Install the plugin into a QGIS profile (QGIS_PROFILE=default)
	$(PY) scripts/build_plugin.py deploy "$(QGIS_PLUGINS_DIR)"

clean: ## Remove build outputs (keeps the .venv and the chroots)
	$(AS_ROOT) rm -rf $(DIST) build $(DEMO_DIR) .pytest_cache .ruff_cache $(MATRIX_OUTPUTS)
