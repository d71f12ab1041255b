# Quick start: `make demo` and `make test` (see README). Both create ./.venv on first use.
PYTHON ?= python3
VENV ?= .venv
PIP = $(VENV)/bin/pip
PY = $(VENV)/bin/python
export OMP_NUM_THREADS ?= 1

.PHONY: install install-dev demo test lint bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

install: $(VENV)/bin/python
	$(PIP) install -q -c constraints.txt -e ".[all]"

install-dev: $(VENV)/bin/python
	$(PIP) install -q -c constraints.txt -e ".[all,dev]"

demo: install
	$(VENV)/bin/mmstore demo

test: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy multimodal_store
	$(VENV)/bin/pytest -q

bench: install-dev
	$(PY) benchmarks/ingest.py
	$(PY) benchmarks/search.py
	$(PY) benchmarks/kernels.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache
