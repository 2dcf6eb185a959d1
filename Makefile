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
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,plots]'
	touch $(STAMP)

install: $(STAMP)

# Exit 1 means some expectations failed or were inconclusive: a measured result, not a broken
# run (on a CPU-only machine the seed's GPU speedups do not hold). Exit 2 or more is an error.
run: $(STAMP)
	@$(BIN)/accel-run specs/day6-quick.yaml; status=$$?; \
	if [ $$status -eq 1 ]; then \
	  echo "make run: exit 1 = expectations did not all hold (a result, see the report above)"; \
	elif [ $$status -ne 0 ]; then exit $$status; fi

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check runner tests benchmarks
	$(BIN)/ruff format --check runner tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) results build *.egg-info
