# The two commands of the README: `make run` and `make test`. Both set up .venv themselves.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
COMPILED := $(VENV)/.compiled

# Everything dndx runs keeps its state inside the checkout.
export PREFECT_HOME := $(CURDIR)/.prefect
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
export PREFECT_LOGGING_LEVEL ?= INFO
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1

.PHONY: setup run serve test test-slow lint benchmark clean

setup: $(STAMP) $(COMPILED)

# uv installs the pinned set in seconds where pip takes most of a minute; pip only
# installs uv itself, pinned like the rest.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt uv
	$(BIN)/uv pip install --python $(BIN)/python -c constraints.txt -e ".[dev]"
	touch $@

# Bytecode compiled on every core, not at first import: PYTHONDONTWRITEBYTECODE may be
# set, and then every process would compile TensorFlow anew (11 s to import it, not 5).
$(COMPILED): $(STAMP)
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib
	touch $@

run: setup
	$(BIN)/dndx run

# A Prefect server on 127.0.0.1:4200, the deployments of infra/prefect.yaml and a worker.
serve: setup
	$(BIN)/dndx serve

# Style and types first: CI (.ci/run) calls this target alone. mypy needs no bytecode,
# so lint runs while compileall does (make -j 2). The tests run in one process per core
# (pytest-xdist), a module to a process (the tests that share a session-built project
# share a module), the longest modules first (LONGEST_FIRST in tests/conftest.py) so
# that none waits behind another at the end.
test: $(STAMP)
	$(MAKE) --no-print-directory -j 2 lint $(COMPILED)
	$(BIN)/python -m pytest -m "not slow" -n auto --maxprocesses 4 --dist loadfile \
		--no-loadscope-reorder

test-slow: setup
	$(BIN)/python -m pytest -m slow

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m flows.stage_deps --check

benchmark: setup
	$(BIN)/python -m benchmarks.simulate
	$(BIN)/python -m benchmarks.infer
	$(BIN)/python -m benchmarks.infer_profile
	$(BIN)/python -m benchmarks.scan
	$(BIN)/python -m benchmarks.training

clean:
	rm -rf $(VENV) .prefect .pytest_cache .mypy_cache .ruff_cache
