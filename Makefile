# Two commands set everything up on a fresh machine:
#   make course   create .venv, install, build the offline dataset and run the whole course offline
#   make test     create .venv, install, run the test suite
# make notebook opens the course in Jupyter in the browser (with jupytext: each .ipynb is paired with its .py source).
# make notebooks builds notebooks/*.ipynb from their sources notebooks/NN_name.py (docs/course.md, "Editing a notebook").
# make rehearse runs Colab's full-profile path offline, every scenario (tools/rehearse.py: stand-in Drive/GCS/VOC, Colab's Python and versions).
# make gpu-wheels / make gpu-check: the GPU machine's one prepared check (docs/testing.md, "GPU check").
# FULL=1 make course runs the course on real VOC data and the published weights (network needed).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Pinned for a fresh machine; a Python that already has torch (Colab) keeps its own.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
RUNS ?= runs
PROFILE := $(if $(FULL),full,offline)

.PHONY: course test install lint clean bench notebook notebooks rehearse gpu-wheels gpu-check

$(VENV)/.installed: pyproject.toml requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[colab,speed,dev]"
	touch $@

install: $(VENV)/.installed

course: install
	$(PY) -m hrank_ssd course --profile $(PROFILE) --runs $(RUNS)

notebook: install
	test -x $(VENV)/bin/jupyter -a -x $(VENV)/bin/jupytext || $(PY) -m pip install -q -e ".[course]"
	$(VENV)/bin/jupyter lab notebooks/

notebooks: install
	$(PY) notebooks/make_notebooks.py

# every notebook on the full profile against a local stand-in of Drive, GCS and the VOC mirrors, in a venv
# like Colab's (.venv-colab, made once): Colab's Python (COLAB_PYTHON=/path/to/python3.13, else python3.13 on
# PATH, else pyenv's; else this Python, with a warning) and every pin of colab/colab-gpu-2026-08.txt, torch
# included; every scenario, each with its own notebooks (docs/rehearsal.md)
COLAB_PYTHON ?=
rehearse: install
	$(PY) tools/rehearse.py --colab_env .venv-colab $(if $(COLAB_PYTHON),--python $(COLAB_PYTHON)) --runs $(RUNS)

# the wheels the GPU machine lacks for `make gpu-check` (CPython 3.12, manylinux x86_64), into .gpu-wheels/
gpu-wheels: install
	$(PY) tools/gpu_check.py wheels --dest .gpu-wheels

# on the GPU machine (no network; its Python has torch): install .gpu-wheels offline, then the CUDA tests, the
# rehearsal's normal scenario on cuda and `bench --device cuda --amp`; writes benchmarks/gpu_check.md.
# GPU_PYTHON=python3 is that machine's Python; GPU_CHECK_ARGS="--device cpu" rehearses the check on a CPU.
GPU_PYTHON ?= python3
gpu-check:
	$(GPU_PYTHON) tools/gpu_check.py run --wheels .gpu-wheels $(GPU_CHECK_ARGS)

# one worker per core (at most 4), whole files per worker so module fixtures are built once
test: install
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile

lint: install
	$(VENV)/bin/ruff check lib tests data_scripts benchmarks notebooks tools
	$(PY) notebooks/make_notebooks.py --check

# the inference options timed against the plain models (benchmarks/README.md lists every benchmark)
bench: install
	$(PY) benchmarks/bench_inference_options.py --out benchmarks/bench_inference_options.md $(if $(wildcard work/offline/models/vgg16-ssd-pruned.pth),--trained work/offline/models/vgg16-ssd-pruned.pth --dataset work/offline/data/VOCdevkit/VOC2007)

clean:
	rm -rf $(RUNS) work .pytest_cache .venv-colab
