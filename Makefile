# agentmon: make test runs everything CI runs; make help lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: help check-tools venv lint unit rules test bench bench-attack clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

$(STAMP): requirements-dev.txt exporter/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt -e 'exporter[test]'
	touch $@

check-tools: ## check the host tools the targets need (.ci/host-tools); names each missing one
	tools/check_tools.sh .ci/host-tools

venv: $(STAMP) ## create .venv with the package and every test tool

lint: $(STAMP) ## ruff (with security rules), yamllint, ansible-lint (production), role specs, dashboards
	cd exporter && ../$(BIN)/ruff check src tests bench
	$(BIN)/yamllint --strict .
	$(BIN)/ruff check --config exporter/pyproject.toml --exclude tools/tests tools roles
	$(BIN)/ruff check tools/tests
	$(BIN)/ruff check molecule
	$(BIN)/ruff check tests
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/ansible-lint
	$(BIN)/python tools/check_argument_specs.py roles
	$(BIN)/python tools/dashboards.py --check
	$(BIN)/python tools/check_dashboards.py

unit: $(STAMP) ## unit and property tests (package, roles' modules) with line+branch coverage (fails below 90%)
	cd exporter && ../$(BIN)/pytest --cov=agentmon --cov-report=term --cov-fail-under=90 tests
	$(BIN)/pytest -q -p no:cacheprovider tools/tests
	$(BIN)/pytest -q -p no:cacheprovider --cov=roles/agentmon_hooks/library --cov-branch \
	  --cov-report=term --cov-fail-under=90 tests/ansible

# promtool comes from Debian's prometheus package (.ci/run installs it).
rules: $(STAMP) ## promtool check (duplicate-rule lint) and unit tests of files/rules, plus their conventions
	promtool check rules --lint=duplicate-rules --lint-fatal files/rules/*.yml
	cd files/rules/tests && promtool test rules *.test.yml
	$(BIN)/python tools/check_rules.py files/rules README.md

# Molecule test hosts: podman (runc, see .ci/containers.conf) running a local Debian 12 image.
export CONTAINERS_CONF ?= $(CURDIR)/.ci/containers.conf
WHEELHOUSE := build/wheelhouse
.PHONY: image wheelhouse molecule demo demo-down

image: check-tools ## build the Debian 12 systemd test host image, only when missing or its recipe changed
	molecule/image/build.sh

$(WHEELHOUSE)/.built: $(STAMP) tools/build_wheelhouse.sh exporter/pyproject.toml $(shell find exporter/src -type f -not -name '*.pyc')
	tools/build_wheelhouse.sh $(WHEELHOUSE)
	touch $@

wheelhouse: $(WHEELHOUSE)/.built ## the agentmon wheel + dependency wheels hosts install offline

# The run's log is kept in build/molecule.log; on failure its failed tests and tasks are repeated
# last, where a CI log cut in the middle still shows them.
molecule: $(STAMP) image wheelhouse ## every Molecule scenario on real systemd hosts (SCENARIO=name for one)
	@mkdir -p build
	set -o pipefail; PATH="$(CURDIR)/$(BIN):$$PATH" AGENTMON_TEST_IMAGE=$$(molecule/image/build.sh --ref) \
	  $(BIN)/molecule test $(if $(SCENARIO),--scenario-name $(SCENARIO),--all) 2>&1 | tee build/molecule.log \
	  || { echo '--- what failed (whole log: build/molecule.log) ---'; \
	       grep -E '(FAILED|ERROR) | E   |fatal: |failed=[1-9]|Error: ' build/molecule.log | grep -v RETRYING | tail -40; exit 1; }

demo: ## the whole stack on one local systemd host (installs what is missing; reuses what exists)
	bash .ci/install-tools
	@$(MAKE) --no-print-directory venv image wheelhouse
	tools/demo.sh up

demo-down: ## remove the demo host, its network and its generated secrets and CA (.demo/)
	tools/demo.sh down

test: check-tools lint unit rules molecule ## everything CI runs (host tools checked first)

# The benchmarks' peers (query-exporter) go into the same venv, only for make bench.
$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(BIN)/pip install --quiet -r requirements-bench.txt
	touch $@

bench: $(BENCH_STAMP) ## benchmarks (not part of test): serve vs baseline vs query-exporter; BENCH_ARGS=--huge adds 10M, --sizes 10000 is quick
	cd exporter && ../$(BIN)/python bench/bench_serve.py --svg ../docs/bench-refresh.svg $(BENCH_ARGS)

bench-attack: $(STAMP) ## hostile clients vs serve's HTTP layer (not part of test); BEFORE=main also runs main's server; BENCH_ARGS=--quick
	cd exporter && ../$(BIN)/python bench/bench_attack.py $(if $(BEFORE),--before $(BEFORE)) $(BENCH_ARGS)

clean: ## remove the venv and caches
	rm -rf $(VENV) exporter/.pytest_cache exporter/.coverage .ruff_cache
