# The two set-up commands of the README: `make run` and `make test`. Each creates .venv when it is
# missing and installs accel-run into it with the pinned versions, so both work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/accel-run specs/day6-quick.yaml

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check runner tests benchmarks
	$(BIN)/ruff format --check runner tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) results build *.egg-info
