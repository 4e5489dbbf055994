# `make demo` and `make test` set everything up from a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test check demo bench mutation gpu-check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# one pytest-xdist worker per core, one thread each (tests/conftest.py)
test: install
	$(PY) -m pytest -q -n auto

# the fast inner loop: every test but the few whole runs marked slow (`make test` runs them all)
check: install
	$(PY) -m pytest -q -n auto -m "not slow"

demo: install
	$(VENV)/bin/ssd demo

bench: install
	$(PY) benchmarks/run_all.py

# On a CUDA machine: training, inference, DDP and the GPU review's items in minutes (benchmarks/gpu_check.py)
gpu-check: install
	$(PY) benchmarks/gpu_check.py --out gpu_check.json

# Mutation testing of the numeric core and the data rules (not part of `make test`; see docs/testing.md,
# "Mutation testing"): the functions below, against the fast tests listed under [tool.mutmut] in pyproject.toml.
MUTATION_SCOPE := 'ssd.anchors.*' 'ssd.box_ops.*' 'ssd.matching.*' 'ssd.loss.*' 'ssd.decoding.*' \
	'ssd.data.labels.*' 'ssd.data.cognata.x_select_objects*' 'ssd.data.cognata.x_split_frames*' \
	'ssd.data.cognata.x_config_selection*' 'ssd.data.coco.*CocoDataset*_objects*' \
	'ssd.checkpoint.x_extract_state_dict*' 'ssd.checkpoint.x_check_state_dict*' 'ssd.checkpoint.x_num_classes_of*' \
	'ssd.checkpoint.x_recorded_other_config*' 'ssd.checkpoint.x_check_config_matches*' 'ssd.checkpoint.x_check_dataset_fits*'

mutation: install
	rm -rf mutants
	OMP_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children $$(nproc) $(MUTATION_SCOPE)
	$(PY) tests/mutation_score.py

clean:
	rm -rf $(VENV) demo_output
