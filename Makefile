# agentmon: make test runs everything CI runs; make help lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv lint unit test clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

$(STAMP): requirements-dev.txt exporter/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt -e 'exporter[test]'
	touch $@

venv: $(STAMP) ## create .venv with the package and every test tool

lint: $(STAMP) ## ruff (with security rules) and yamllint
	cd exporter && ../$(BIN)/ruff check src tests bench
	$(BIN)/yamllint --strict .

unit: $(STAMP) ## unit and property tests with line+branch coverage (fails below 90%)
	cd exporter && ../$(BIN)/pytest --cov=agentmon --cov-report=term --cov-fail-under=90 tests

test: lint unit ## everything CI runs

clean: ## remove the venv and caches
	rm -rf $(VENV) exporter/.pytest_cache exporter/.coverage .ruff_cache
