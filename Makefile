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
	@# BasicSR's NIQE source, for the test that compares our NIQE with it (optional: the test skips without it)
	-$(PY) -m tests.basicsr_reference fetch
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
