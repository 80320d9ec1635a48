# make run   set everything up, then run the bot (python -m bot run)
# make test  set everything up, then lint and run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test lint services setup

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

services:
	@bash .ci/services

# With the machine's PostgreSQL and Redis (config.toml points at them); on a
# machine without them, on embedded ones (both URLs empty: see README).
run: setup
	@if bash .ci/services; then $(PY) -m bot run; else \
	  echo "no PostgreSQL/Redis here: running on embedded ones"; \
	  ESCROW__DATABASE__URL= ESCROW__REDIS__URL= $(PY) -m bot run; fi

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: setup services lint
	$(PY) -m pytest
