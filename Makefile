# Two commands on a fresh clone: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ALLOC_STAMP := $(VENV)/.allocator
# Commands run with the caching allocator darkroom uses (experiments/allocator.py; DARKROOM_ALLOCATOR=system: off)
WITH_ALLOCATOR := $(PY) -m experiments.allocator exec --
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

# jemalloc (Debian libjemalloc2), tried once per venv, best-effort: as root with apt-get, else a hint
$(ALLOC_STAMP): | $(STAMP)
	@if $(PY) -c "import sys; from experiments.allocator import find_library as f; sys.exit(f('jemalloc') is None)"; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjemalloc2 >/dev/null) \
	    || echo "note: could not install libjemalloc2; darkroom uses glibc malloc tunables instead"; \
	else echo "note: jemalloc not found; for faster CPU runs install it (Debian/Ubuntu: apt-get install libjemalloc2)"; fi
	@touch $(ALLOC_STAMP)

setup: $(STAMP) $(ALLOC_STAMP)

demo: setup
	$(VENV)/bin/darkroom demo

test: setup
	$(WITH_ALLOCATOR) $(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	PY=$(PY) bash benchmarks/run_all.sh $(BENCH_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
