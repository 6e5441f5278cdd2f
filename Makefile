# Two commands do all the set-up on a fresh clone:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= constraints-cpu.txt
PY := $(VENV)/bin/python
PIP_C := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
PYTEST_SELECT ?= not slow and not gpu and not tensorrt
# one pytest-xdist worker per logical CPU (a session fixture is built once per worker)
PYTEST_WORKERS ?= logical

.PHONY: setup demo test test-all clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(PIP_C) -e ".[dev]"
	@touch $@

demo: setup
	$(VENV)/bin/deploy-robust demo

test: setup
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check --quiet .
	$(VENV)/bin/ruff format --check --quiet .
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m "$(PYTEST_SELECT)"

test-all: setup
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check --quiet .
	$(VENV)/bin/ruff format --check --quiet .
	$(PY) -m pytest -q -n $(PYTEST_WORKERS)

clean:
	rm -rf $(VENV) demo-out .pytest_cache build *.egg-info
