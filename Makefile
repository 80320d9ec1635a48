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

run: setup services
	$(PY) -m bot run

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: setup services lint
	$(PY) -m pytest
