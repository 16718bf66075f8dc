# One venv, made on demand: every target that needs it depends on .venv/.installed,
# which is rebuilt only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUNTIME := $(VENV)/.runtime

.PHONY: install lint format test test-redis fuzz demo bench bench-e2e bench-sweep bench-postgres bench-peers clean

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

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The Redis-facing tests only, e.g. against another server:
#   STRATEGYQ_TEST_REDIS_URL=redis://127.0.0.1:6379/15 make test-redis
test-redis: $(STAMP)
	$(BIN)/python -m pytest -q -m redis $(PYTEST_ARGS)

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
# (.venv-peers) so the peers never enter the project's environment. Not part of make test.
PEERS := .venv-peers
bench-peers:
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS)/bin/python -m pip install --quiet -e '.[bench]' 'celery[redis]>=5.3,<6'
	$(PEERS)/bin/python -m benchmarks peers

clean:
	rm -rf $(VENV) $(PEERS) build dist .pytest_cache .mypy_cache .ruff_cache
