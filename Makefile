# Packvault developer entry points.  `make demo` and `make test` work on a fresh machine with only
# Python 3.11+ and (for the LocalStack tests) python3.13: they build their own virtual environments.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LOCALSTACK_PORT ?= 4566
PYTEST_ARGS ?=

.PHONY: install demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# A real backup -> list -> restore round trip into a local directory repository.
demo: $(STAMP)
	bash docs/demo.sh $(BIN)/packvault

# Everything: unit, integration (moto server started by the tests, LocalStack started here), infra checks.
test: $(STAMP)
	bash .ci/install-checkov.sh
	bash .ci/install-fuse.sh
	bash localstack/start-host.sh $(LOCALSTACK_PORT)
	set -o pipefail; rc=0; \
	PACKVAULT_TEST_LOCALSTACK=http://127.0.0.1:$(LOCALSTACK_PORT) $(BIN)/python -m pytest $(PYTEST_ARGS) || rc=$$?; \
	bash localstack/stop.sh; \
	if [ $$rc -eq 0 ]; then $(BIN)/ruff check src tests bench || rc=$$?; fi; \
	if [ $$rc -eq 0 ]; then PYTHONPATH=src $(BIN)/lint-imports || rc=$$?; fi; \
	exit $$rc

# The quick inner loop: no LocalStack, no slow end-to-end cases.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not localstack" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	PYTHONPATH=src $(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .venv-localstack .venv-checkov .localstack-fs .pytest_cache
