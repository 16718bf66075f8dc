# One venv, made on demand: every target that needs it depends on .venv/.installed,
# which is rebuilt only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUNTIME := $(VENV)/.runtime

.PHONY: install lint format test test-all test-redis fuzz demo bench bench-e2e bench-sweep bench-postgres bench-peers clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks services tools
	$(BIN)/ruff format --check src tests benchmarks services tools
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks services tools
	$(BIN)/ruff check --fix src tests benchmarks services tools

# Tests run in parallel (pytest-xdist, one private valkey-server per worker process);
# the tests of a module that share a live API, worker or server stay on one worker.
# Most of the suite waits on subprocesses and servers, so there are more workers than
# cores. TEST_WORKERS=0 runs in this process, one test at a time.
TEST_WORKERS ?= 4
XDIST = -n $(TEST_WORKERS) --dist loadgroup
# Bytecode caches on, even where PYTHONDONTWRITEBYTECODE is set: without them each xdist
# worker rewrites the asserts of every test module again (twice the CPU of a collection
# with them), and each of the hundreds of worker, executor and CLI subprocesses the tests
# start compiles the package from source.
PYTEST = env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest

# Everything but the chaos, crash and soak tests (marked slow): the everyday run.
test: $(STAMP)
	$(PYTEST) -q $(XDIST) -m "not slow" $(PYTEST_ARGS)

# Every test, slow ones included (what CI runs).
test-all: $(STAMP)
	$(PYTEST) -q $(XDIST) $(PYTEST_ARGS)

# The Redis-facing tests only, e.g. against another server (each xdist worker uses the
# URL's database plus its index: 8, 9, 10, 11 here):
#   STRATEGYQ_TEST_REDIS_URL=redis://127.0.0.1:6379/8 make test-redis
test-redis: $(STAMP)
	$(PYTEST) -q $(XDIST) -m redis $(PYTEST_ARGS)

# Schemathesis against the live API, with many more generated requests than make test.
fuzz: $(STAMP)
	STRATEGYQ_FUZZ_EXAMPLES=$${STRATEGYQ_FUZZ_EXAMPLES:-300} $(BIN)/python -m pytest -q -s \
		tests/integration/api/test_schema.py $(PYTEST_ARGS)

# The demo needs the runtime only: no linters, type checker or benchmark baselines.
$(RUNTIME): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUNTIME)

demo: $(RUNTIME)
	$(BIN)/strategyq demo

bench: $(STAMP)
	$(BIN)/python -m benchmarks

bench-e2e: $(STAMP)
	$(BIN)/python -m benchmarks e2e

bench-sweep: $(STAMP)
	$(BIN)/python -m benchmarks sweep

# Needs a PostgreSQL server (STRATEGYQ_BENCH_PG, default postgres@127.0.0.1:5432).
bench-postgres: $(STAMP)
	$(BIN)/python -m benchmarks postgres

# strategyq beside RQ, Celery, vectorbt and backtesting.py, each in a venv of its own
# (.venv-peers) so the peers never enter the project's environment: every target of
# docs/performance.md's peers table re-measured, one summary table at the end. About
# 20 minutes and 7.5 GiB at the peak (the 5,000 symbols x 20 y backtest; see
# STRATEGYQ_BENCH_SCALE_SYMBOLS to shrink it). Not part of make test.
PEERS := .venv-peers
bench-peers:
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS)/bin/python -m pip install --quiet -e '.[bench]' 'celery[redis]>=5.3,<6'
	$(PEERS)/bin/python -m benchmarks peers

clean:
	rm -rf $(VENV) $(PEERS) build dist .pytest_cache .mypy_cache .ruff_cache
