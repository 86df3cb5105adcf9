# rsdl: one entry point for install, test, demo, lint, bench, zip and deploy.
# On a fresh Debian machine `make demo` and `make test` are all a newcomer types:
# both install what is missing first.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := .venv
PY          := $(VENV)/bin/python
SYSTEM_PY   := /usr/bin/python3
APT_PACKAGES := qgis python3-qgis qgis-providers python3-matplotlib python3-venv gdal-bin xvfb xauth
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

export QT_QPA_PLATFORM ?= offscreen

.PHONY: help install apt-packages test demo lint bench zip deploy clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

apt-packages: ## Install QGIS, GDAL and Xvfb from Debian packages when any is missing
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(INSTALL_STAMP): $(REQUIREMENTS) Makefile
	@$(MAKE) --no-print-directory apt-packages
	@test -x $(PY) || $(SYSTEM_PY) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check \
	  -r requirements/dev.txt -r requirements/plugin.txt -r requirements/ml.txt -r requirements/training.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/toolbelt.txt
	@touch $@

install: ## Install apt packages, the .venv and pinned pip packages (idempotent, seconds when done)
	@$(MAKE) --no-print-directory apt-packages
	@$(MAKE) --no-print-directory --silent $(INSTALL_STAMP) >/dev/null
	@echo "install: up to date ($(VENV), QGIS $$($(SYSTEM_PY) -c 'from qgis.core import Qgis; print(Qgis.QGIS_VERSION)'))"

test: install ## Run every test: unit, QGIS (pytest-qgis), qgis_process, robustness, training, desktop
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install ## A model end to end on a sample scene: segment, rasterize labels, evaluate, PNG map (own data: DATA=raster MODEL=model.onnx LABELS=vectors LABEL_FIELD=field LABEL_NAME_FIELD=field SPARSE_LABELS=1; DEMO_DIR=...)
	$(PY) scripts/demo.py '$(DEMO_DIR)' $(if $(DATA),--data '$(DATA)') $(if $(MODEL),--model '$(MODEL)') \
	  $(foreach source,$(LABELS),--labels '$(source)') $(if $(LABEL_FIELD),--field '$(LABEL_FIELD)') \
	  $(if $(LABEL_NAME_FIELD),--name-field '$(LABEL_NAME_FIELD)') $(if $(SPARSE_LABELS),--sparse)

lint: install ## ruff lint and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: install ## Benchmarks: rasterize vs gdal_rasterize, segment vs onnxruntime/toolbelt with a tiny net and the demo U-Net (BENCH_SIZES=..., INFER_SIZES=4000,8000,16000)
	$(PY) tests/bench/bench_rasterize.py $(if $(BENCH_SIZES),--sizes $(BENCH_SIZES))
	$(PY) tests/bench/bench_inference.py $(if $(INFER_SIZES),--sizes $(INFER_SIZES))
	$(PY) tests/bench/bench_inference.py --sizes 16000 --toolbelt-max 0 \
	  --model-file models/sample_scene_landcover/model.onnx

zip: install ## Build the installable plugin zip in dist/
	$(PY) scripts/build_plugin.py zip $(PLUGIN_ZIP)

deploy: install ## Install the plugin into a QGIS profile (QGIS_PROFILE=default)
	$(PY) scripts/build_plugin.py deploy "$(QGIS_PLUGINS_DIR)"

clean: ## Remove build outputs (keeps the .venv)
	rm -rf $(DIST) build $(DEMO_DIR) .pytest_cache .ruff_cache
