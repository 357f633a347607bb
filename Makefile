# `make run` serves the demo app; `make test` runs ruff and the test suite; `make docs` builds the manual.
# They build the virtualenv (.venv) from pyproject.toml on first use: `run` installs only what serving
# needs (RUN_EXTRAS: the three servers and uvloop), `docs` that and the `docs` extra, `test` and the bench
# targets the whole `dev` extra.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
STAMP := $(VENV)/.installed-stamp
RUN_STAMP := $(VENV)/.run-stamp
DOCS_STAMP := $(VENV)/.docs-stamp
RUN_EXTRAS := granian,uvicorn,hypercorn,uvloop

.PHONY: run test test-slow test-oldest lint docs clean bench-compare bench-reliability bench-key-cost bench-layer-cost bench-client-scaling bench-tuner-vs-grid bytecode

$(PY):
	$(PYTHON) -c 'import sys; sys.exit("pyfly-hydra needs Python 3.11+") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(PY)
	$(PIP) -e '.[$(RUN_EXTRAS)]'
	touch $(RUN_STAMP)

$(DOCS_STAMP): pyproject.toml | $(PY)
	$(PIP) -e '.[docs,$(RUN_EXTRAS)]'
	touch $(DOCS_STAMP)

$(STAMP): pyproject.toml | $(PY)
	$(PIP) -e '.[dev]'
	touch $(STAMP)

# Byte-compile the package (an editable install is not, and PYTHONDONTWRITEBYTECODE=1 environments never
# write the cache): every start would otherwise compile pyfly_hydra from source, ~15-30 ms.
bytecode: $(RUN_STAMP)
	$(PY) -m compileall -q pyfly_hydra

run: bytecode
	$(PY) -m pyfly_hydra $(ARGS)

# The manual (docs/, mkdocs.yml) into site/, strict: a broken link or anchor, a page left out of the navigation,
# or a schema key without a description fails it. Its configuration reference is generated as it builds
# (docs/hooks/reference.py), from the schema and the servers installed here: hence the RUN_EXTRAS.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# Two phases: most tests on TEST_WORKERS processes (they mostly wait on servers), then the timing- and
# ratio-sensitive ones (marked serial) alone, so a neighbour's load never decides them. Exit code 5 of a
# phase (PYTEST_ARGS selected none of its tests) is not a failure.
# 3 on two CPUs: the first phase took 7:10 with 2 and 5:27 with 3 (its tests mostly wait).
TEST_WORKERS ?= 3
test: lint
	$(PY) -m pytest -n $(TEST_WORKERS) -m "not serial and not slow" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(PY) -m pytest -m "serial and not slow" $(PYTEST_ARGS) || [ $$? -eq 5 ]

# The long tests (marked slow: the Ray cluster, packaging every extra, whole sweeps, the sweep presets, the
# tuner's resume, search and confirming, a user's own server swept and tuned, the forked start's end-to-end
# check, the command-line fuzz, the capacity search, the recycling drill, the load clients against wrk, the
# one-worker rolling restarts, the reload drill, every override --help lists, crash loops waited out), in the same
# two phases, so `make test` stays under 10 minutes on 2 CPUs. `.ci/run` runs it after it.
test-slow: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) -m "slow and not serial" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(PY) -m pytest -m "slow and serial" $(PYTEST_ARGS) || [ $$? -eq 5 ]

# The end-to-end server tests (every server x loop with 2 workers, shutdown, supervision, recycling,
# reload, limits, deploying, rolling restarts, the watchdog, readiness, metrics, access log, log rotation, configuration
# from the environment) on the oldest versions pyproject.toml declares (constraints/oldest.txt),
# in a virtualenv of their own. `.ci/run` runs it after `make test`.
OLDEST_VENV ?= .venv-oldest
OLDEST_STAMP := $(OLDEST_VENV)/.installed-stamp
SERVER_TESTS ?= tests/test_loops_per_worker.py tests/test_shutdown.py tests/test_supervision.py \
	tests/test_recycling.py tests/test_reload.py tests/test_limits.py tests/test_reliability.py tests/test_deploying.py \
	tests/test_security.py tests/test_proxies.py tests/test_rolling_restart.py tests/test_watchdog.py tests/test_notify.py \
	tests/test_metrics.py tests/test_access_log_format.py tests/test_log_rotation.py tests/test_environment_config.py \
	tests/test_loops_by_name.py tests/test_http3.py tests/test_websocket_http2.py
$(OLDEST_STAMP): pyproject.toml constraints/oldest.txt
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(OLDEST_VENV)/bin/python -m pip install --quiet -c constraints/oldest.txt -e '.[dev]'
	touch $(OLDEST_STAMP)

test-oldest: $(OLDEST_STAMP)
	$(OLDEST_VENV)/bin/python -m pip list 2>/dev/null | grep -iE '^(granian|uvicorn|hypercorn|uvloop|rloop|trio|aioquic|hydra-core|omegaconf) '
	$(OLDEST_VENV)/bin/python -m pytest -n $(TEST_WORKERS) -m "not serial" $(SERVER_TESTS) $(PYTEST_ARGS) || [ $$? -eq 5 ]

bench-compare: $(STAMP) bytecode
	$(PY) benchmarks/compare.py $(ARGS)

bench-reliability: $(STAMP) bytecode
	$(PY) benchmarks/reliability.py $(ARGS)

bench-key-cost: $(STAMP) bytecode
	$(PY) benchmarks/key_cost.py $(ARGS)

bench-layer-cost: $(STAMP) bytecode
	$(PY) benchmarks/layer_cost.py $(ARGS)

bench-client-scaling: $(STAMP) bytecode
	$(PY) benchmarks/client_scaling.py $(ARGS)

bench-tuner-vs-grid: $(STAMP) bytecode
	$(PY) benchmarks/tuner_vs_grid.py $(ARGS)

clean:
	rm -rf $(VENV) $(OLDEST_VENV) .pytest_cache .ruff_cache site
