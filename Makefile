# carmigrate developer commands. Every target creates .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help demo test lint typecheck imports pytest docs docs-serve bench system-deps node-deps clean

help:
	@echo "make demo   - run the demo on generated data"
	@echo "make test   - ruff, mypy --strict, import-linter, pytest, mkdocs build --strict"
	@echo "make bench  - run benchmarks/ and print the tables for RESULTS.md"

$(STAMP): pyproject.toml setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e '.[s3,azure,fsspec,dask,testing,interop,progress,blake3,records,osparc,ocis]' --group dev
	touch $@

# System packages the test servers need (OpenStack Swift, memcached, rclone).
system-deps:
	bash scripts/install-system-deps

# Node packages the test servers need (Azurite, under .cache/azurite).
node-deps:
	bash scripts/install-azurite >/dev/null

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

typecheck: $(STAMP)
	$(BIN)/mypy --strict src/carmigrate

imports: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP) system-deps node-deps
	$(BIN)/pytest $(PYTEST_ARGS)

docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir .site

test: lint typecheck imports pytest docs

bench: $(STAMP)
	$(BIN)/python -m pip install -q --group bench
	bash benchmarks/run

clean:
	rm -rf $(VENV) .site build .pytest_cache .mypy_cache .ruff_cache
