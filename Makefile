# Two commands do all the set-up on a fresh clone:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= constraints-cpu.txt
PY := $(VENV)/bin/python
PIP_C := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
PYTEST_SELECT ?= not slow and not gpu and not tensorrt

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
	$(PY) -m pytest -q -m "$(PYTEST_SELECT)"

test-all: setup
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) demo-out .pytest_cache build *.egg-info
