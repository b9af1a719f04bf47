# Every target sets itself up: the venv is created and the project installed when missing or stale.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_DIR ?= .run

.PHONY: venv test lint typecheck contracts pytest run bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck contracts pytest

run: $(STAMP)
	$(BIN)/sluicegate render -f examples/ -o $(RUN_DIR)/config --namespace default
	$(BIN)/sluicegate sidecar --config $(RUN_DIR)/config --ledger-dir $(RUN_DIR)/ledger

clean:
	rm -rf $(VENV) $(RUN_DIR) .tools .mypy_cache .pytest_cache .ruff_cache
