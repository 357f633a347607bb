# `make run` serves the demo app; `make test` runs ruff and the test suite.
# Both build their own virtualenv (.venv) from pyproject.toml on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint clean bench-compare bench-reliability bytecode

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("pyfly-hydra needs Python 3.11+") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Byte-compile the package (an editable install is not, and PYTHONDONTWRITEBYTECODE=1 environments never
# write the cache): every start would otherwise compile pyfly_hydra from source, ~15-30 ms.
bytecode: $(STAMP)
	$(PY) -m compileall -q pyfly_hydra

run: bytecode
	$(PY) -m pyfly_hydra $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Two phases: most tests on TEST_WORKERS processes (they mostly wait on servers), then the timing- and
# ratio-sensitive ones (marked serial) alone, so a neighbour's load never decides them. Exit code 5 of a
# phase (PYTEST_ARGS selected none of its tests) is not a failure.
# 3 on two CPUs: the first phase took 7:10 with 2 and 5:27 with 3 (its tests mostly wait).
TEST_WORKERS ?= 3
test: lint
	$(PY) -m pytest -n $(TEST_WORKERS) -m "not serial" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(PY) -m pytest -m serial $(PYTEST_ARGS) || [ $$? -eq 5 ]

bench-compare: bytecode
	$(PY) benchmarks/compare.py $(ARGS)

bench-reliability: bytecode
	$(PY) benchmarks/reliability.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
