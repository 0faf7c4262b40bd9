# The README's two commands: `make run` and `make test`. Nothing else is needed on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-compare clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The demo job types (demo.sleep, demo.fail, demo.render) are for trying callboard out:
# on here, off in a plain `callboard serve` (README, "Job types").
run: $(STAMP)
	$(BIN)/callboard serve --demo-types

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

# pytest exits 5 when no tests ran; make treats any non-zero exit as failure, so an empty run cannot pass.
test: $(STAMP) lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/noop_throughput.py

# callboard beside SAQ, Procrastinate and arq (docs/benchmarks.md); the peers come from
# the `bench` extra only, never from `make test`'s install.
$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

bench-compare: $(VENV)/.bench-installed
	$(BIN)/python bench/compare.py $(ARGS)

clean:
	rm -rf $(VENV) callboard-data .pytest_cache
