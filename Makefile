# FlowForge: `make run` and `make test` work on a fresh Debian machine (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
TEST_ENV := $(shell grep -v '^\#' tests/stack.env | xargs)

.PHONY: help install run stop test test-unit bench soak lint format docs clean

help:
	@echo "make run    install, start the local stack, the worker, the bridges and a demo feed"
	@echo "make test   install, start the test stack, run unit + integration tests, stop it"
	@echo "make bench  install, run the benchmarks on the test stack (~20 min), update BENCHMARKS.md"
	@echo "make lint   ruff, mypy and the import contracts (lint-imports)"
	@echo "make stop   stop the local stack started by make run"
	@echo "make docs   regenerate the settings table in README.md"
	@echo "make soak   30 minutes at a steady rate through the whole local stack (SOAK_ARGS=...)"

install: $(STAMP)

$(STAMP): pyproject.toml scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "FlowForge needs Python >= 3.11; set PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# `make run` uses FlowForge's default home (FLOWFORGE_HOME, else $XDG_STATE_HOME/flowforge or
# ~/.local/state/flowforge), the one every `flowforge` command finds from any directory.
run: install
	$(BIN)/flowforge stack up --demo
	$(BIN)/flowforge stack status
	@echo
	@echo "FlowForge is running, fed by two simulated cameras. Logs: $$($(BIN)/flowforge config | sed -n 's/^FLOWFORGE_HOME=//p')/logs/"
	@echo "Publish: mosquitto_pub -q 1 -t images/raw/my-cam -f data/sample.jpg"
	@echo "Look:    $(BIN)/flowforge stats     $(BIN)/flowforge tail images.metadata"
	@echo "Health:  $(BIN)/flowforge validate   http://127.0.0.1:6066/metrics"
	@echo "SQL:     curl http://localhost:8123/ -d 'SELECT COUNT(*) FROM images_metadata'"
	@echo "         or in a browser: http://localhost:8123/play"
	@echo "Stop:    make stop"

stop:
	@test -x $(BIN)/flowforge && $(BIN)/flowforge stack down || true

# The test session starts its own stack (tests/stack.env) and stops it at the end; the
# `stack down` after pytest is a safety net for an interrupted run.
test: install
	status=0; $(BIN)/python -m pytest $(PYTEST_ARGS) || status=$$?; \
	env $(TEST_ENV) $(BIN)/flowforge stack down >/dev/null 2>&1 || true; \
	exit $$status

test-unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

# Benchmarks (bench/run.py): each step a process with a time limit, results in bench/results/,
# the headline table in BENCHMARKS.md; exits non-zero if a step failed. Not part of `make test`.
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# py-spy (profiles) and matplotlib (the soak's plot): only for bench and soak, not make test.
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

docs: install
	$(BIN)/python -m flowforge.cli.docs README.md

# The soak (issue 10): SOAK_ARGS="--minutes 3" for a short one. Not part of `make test`.
soak: $(BENCH_STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# Removes the test stack's home (.flowforge) and caches; `make run`'s data stays in its home.
clean: stop
	rm -rf .flowforge .pytest_cache .mypy_cache .ruff_cache
	@test -x $(BIN)/flowforge && echo "kept $$($(BIN)/flowforge config | sed -n 's/^FLOWFORGE_HOME=//p') (make run's data; delete it to start afresh)" || true
