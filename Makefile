# Two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint services bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/reactor demo

services:
	scripts/ensure-services

test: $(STAMP) services
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check reactor tests bench
	$(BIN)/ruff format --check reactor tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP) services
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
