# Two commands on a fresh clone: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export NO_ALBUMENTATIONS_UPDATE := 1
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools
	$(PY) -m pip install -q -c constraints.txt "torch==2.13.0"
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	@# NIQE's model from BasicSR's PyPI sdist, SHA-256 checked (NIQE and its tests need it; they skip without it)
	-$(PY) -m metrics.niqe_model fetch
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/darkroom demo

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) benchmarks/zero_dce_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache
