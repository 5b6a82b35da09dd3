# Two commands set everything up on a fresh machine:
#   make course   create .venv, install, build the offline dataset and run the whole course offline
#   make test     create .venv, install, run the test suite
# make notebook opens the course in Jupyter in the browser (with jupytext: each .ipynb is paired with its .py source).
# make notebooks builds notebooks/*.ipynb from their sources notebooks/NN_name.py (docs/course.md, "Editing a notebook").
# make rehearse runs Colab's full-profile path offline (stand-in Drive/GCS/VOC, Colab's package versions).
# FULL=1 make course runs the course on real VOC data and the published weights (network needed).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Pinned for a fresh machine; a Python that already has torch (Colab) keeps its own.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
RUNS ?= runs
PROFILE := $(if $(FULL),full,offline)

.PHONY: course test install lint clean bench notebook notebooks rehearse

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
# pinned to Colab's versions (.venv-colab, made once), normal + Drive quota + damaged downloads
rehearse: install
	$(PY) -m hrank_ssd rehearse --colab_env .venv-colab --runs $(RUNS)

# one worker per core (at most 4), whole files per worker so module fixtures are built once
test: install
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile

lint: install
	$(VENV)/bin/ruff check lib tests data_scripts benchmarks notebooks
	$(PY) notebooks/make_notebooks.py --check

bench: install
	$(PY) benchmarks/run_all.py $(if $(wildcard work/offline/models/vgg16-ssd-pruned.pth),--trained work/offline/models/vgg16-ssd-pruned.pth --dataset work/offline/data/VOCdevkit/VOC2007)

clean:
	rm -rf $(RUNS) work .pytest_cache .venv-colab
