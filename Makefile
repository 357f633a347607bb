# `make run` serves the demo app; `make test` runs ruff and the test suite.
# Both build their own virtualenv (.venv) from pyproject.toml on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint clean bench-compare bench-reliability

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("pyfly-hydra needs Python 3.11+") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m pyfly_hydra $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench-compare: $(STAMP)
	$(PY) benchmarks/compare.py $(ARGS)

bench-reliability: $(STAMP)
	$(PY) benchmarks/reliability.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
