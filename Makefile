# The two set-up commands of the README: `make run` and `make test`. Each creates .venv when it is
# missing and installs accel-run into it with the pinned versions, so both work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast test-slurm gpu-check gpu-wheels lint install clean editor-tools try-editor-tools

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

test: $(STAMP) try-editor-tools
	$(BIN)/python -m pytest -m "not slurm"

# The SLURM engine against a real 2-node cluster on this machine (about 2 minutes): start it first
# with scripts/test-cluster.sh start and eval "$$(scripts/test-cluster.sh env)"; .ci/run does.
test-slurm: $(STAMP)
	$(BIN)/python -m pytest -m slurm

# The inner loop: everything but the tests that launch real accelerate processes (seconds).
test-fast: $(STAMP) try-editor-tools
	$(BIN)/python -m pytest -m "not slow and not gpu" -q

# The wheels a GPU machine without network needs beside its own torch and accelerate (pydantic,
# ruamel.yaml and what they need), for its Python (GPU_PYTHON, default 3.12), into .whl/ (ignored by
# git): carry .whl to that machine and run scripts/gpu-check.sh there.
GPU_PYTHON ?= 3.12
gpu-wheels:
	python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version $(GPU_PYTHON) --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
	  pydantic==2.14.4 pydantic_core==2.50.5 annotated-types typing-inspection 'typing_extensions>=4.16' \
	  ruamel.yaml==0.19.1 ruamel.yaml.clib==0.2.15
	@ls .whl

# On a machine with CUDA: the GPU tests (Day 6 on 1 and all GPUs, fp32 and bf16), report printed.
# constraints.txt pins torch's CPU build: on a GPU machine put a CUDA build of torch in .venv first.
# scripts/gpu-check.sh runs these and everything else a short visit to a GPU machine should do.
gpu-check: $(STAMP)
	@$(BIN)/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else \
	  'gpu-check: torch ' + torch.__version__ + ' sees no CUDA GPU (no GPU here, or the CPU build of torch)')"
	$(BIN)/python -m pytest -m gpu -s -ra -p no:cacheprovider

# The YAML language server (the one behind VS Code's, Neovim's and Helix's YAML support) that
# tests/test_editor.py drives over stdio. Needs node and npm; the version and its dependencies are
# pinned by .tools/yaml-ls/package.json and package-lock.json.
YAML_LS := .tools/yaml-ls
editor-tools: $(YAML_LS)/node_modules/.package-lock.json

$(YAML_LS)/node_modules/.package-lock.json: $(YAML_LS)/package.json $(YAML_LS)/package-lock.json
	npm ci --prefix $(YAML_LS) --no-audit --no-fund $(NPM_FLAGS)

# `make test` and `make test-fast` try the editor tools first, so a fresh clone needs no manual step.
# Without npm, or offline (npm's cache first, one quick retry), they say so in one line and go on:
# tests/test_editor.py is then skipped, saying why (CI requires it: .ci/run).
try-editor-tools:
	@if ! command -v npm >/dev/null; then \
	  echo "make: no npm here: the yaml-language-server tests (tests/test_editor.py) will be skipped"; \
	elif ! out=$$($(MAKE) --no-print-directory editor-tools \
	    NPM_FLAGS="--prefer-offline --fetch-retries=1 --fetch-timeout=20000" 2>&1); then \
	  echo "make: could not install yaml-language-server ($$(printf '%s\n' "$$out" | grep -m1 -i 'error' || \
	    printf '%s\n' "$$out" | tail -n1)): tests/test_editor.py will be skipped"; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check runner tests benchmarks
	$(BIN)/ruff format --check runner tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) results build *.egg-info
