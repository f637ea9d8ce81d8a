# Two set-up commands, both self-contained on a fresh machine:
#   make demo   creates .venv if missing, installs archsim, runs the main job, prints where its output is
#   make test   creates .venv, installs archsim with the dev and kernels extras, runs the whole suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_OUT := reports/demo

.PHONY: demo test lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch first, pinned: this machine has a CPU build of 2.13.0 on disk; a looser pin downloads CUDA builds.
$(VENV)/.dev-installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,kernels]'
	touch $@

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

# --replace-other-version: a store an earlier archsim wrote (none of its points reusable) is started afresh, where
# the sweep would refuse it; one of this archsim (a demo killed midway) resumes.
demo: $(VENV)/.installed
	mkdir -p $(DEMO_OUT)
	$(VENV)/bin/archsim sweep demo --db $(DEMO_OUT)/demo.sqlite --replace-other-version
	$(VENV)/bin/archsim report --sweep $(DEMO_OUT)/demo.sqlite --spec demo --out $(DEMO_OUT)

# Two pytest workers (pytest-xdist), one test file each at a time, so a file's shared fixtures (the
# reproductions) are computed once.
test: $(VENV)/.dev-installed
	$(PY) -m pytest -q -n 2 --dist loadfile

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check archsim tests kernels

clean:
	rm -rf $(VENV) build *.egg-info
