# agentmon: make test runs everything CI runs; make help lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: help check-tools venv lint unit rules test bench bench-attack bench-flood bench-soak bench-prune clean

# The repository is the collection agentmon.stack and consumes itself: ansible.cfg's
# collections_path starts with build/collections, where ansible_collections/agentmon/stack is a
# link to this checkout (made by every target that runs Ansible).
COLLECTION_LINK := build/collections/ansible_collections/agentmon/stack
COLLECTION_VERSION = $(shell sed -n 's/^version: *//p' galaxy.yml)
COLLECTION_ARTIFACT = build/agentmon-stack-$(COLLECTION_VERSION).tar.gz
# The wheels agent hosts install (agentmon and its dependencies), shipped inside the collection.
WHEELHOUSE := roles/_release/files/wheelhouse

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

$(STAMP): requirements-dev.txt exporter/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt -e 'exporter[test]'
	touch $@

$(COLLECTION_LINK):
	mkdir -p $(@D)
	ln -sfn ../../../.. $@

.PHONY: collection-path collection sanity
collection-path: $(COLLECTION_LINK) ## link build/collections/ansible_collections/agentmon/stack to this checkout (ansible.cfg's collections_path)

collection: $(STAMP) wheelhouse ## build the collection artifact build/agentmon-stack-<version>.tar.gz (wheelhouse included)
	$(BIN)/ansible-galaxy collection build --force --output-path build .
	@ls -l $(COLLECTION_ARTIFACT)

# ansible-test sanity on a copy of the collection's tracked files under ansible_collections/agentmon/stack
# (it refuses any other path), with this venv's Python 3.11, no containers (tools/sanity.sh).
sanity: $(STAMP) ## ansible-test sanity of the collection (the tests that run offline here)
	PATH="$(CURDIR)/$(BIN):$$PATH" tools/sanity.sh

check-tools: ## check the host tools the targets need (.ci/host-tools); names each missing one
	tools/check_tools.sh .ci/host-tools

venv: $(STAMP) ## create .venv with the package and every test tool

lint: $(STAMP) $(COLLECTION_LINK) ## ruff (with security rules), yamllint, ansible-lint (production), ansible-test sanity, role specs, dashboards, generated docs, links
	cd exporter && ../$(BIN)/ruff check src tests bench
	$(BIN)/yamllint --strict .
	# Ansible modules put their imports after DOCUMENTATION, EXAMPLES and RETURN (E402).
	$(BIN)/ruff check --config exporter/pyproject.toml --extend-per-file-ignores 'plugins/modules/*.py:E402' \
	  --exclude tools/tests tools roles plugins
	$(BIN)/ruff check tools/tests
	$(BIN)/ruff check molecule
	$(BIN)/ruff check tests
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/ansible-lint
	PATH="$(CURDIR)/$(BIN):$$PATH" tools/sanity.sh
	$(BIN)/python tools/check_argument_specs.py roles
	$(BIN)/python tools/dashboards.py --check
	$(BIN)/python tools/check_dashboards.py
	$(BIN)/python tools/original_fixture.py --check molecule/agent_host/files/original_schema.sql
	$(BIN)/python tools/metrics_doc.py --check docs/metrics.md
	$(BIN)/python tools/check_links.py

unit: $(STAMP) $(COLLECTION_LINK) ## unit and property tests (package, the collection's plugins) with line+branch coverage (fails below 90%)
	cd exporter && ../$(BIN)/pytest --cov=agentmon --cov-report=term --cov-fail-under=90 tests
	$(BIN)/pytest -q -p no:cacheprovider tools/tests tests/nginx
	$(BIN)/pytest -q -p no:cacheprovider --cov=plugins --cov-branch \
	  --cov-report=term --cov-fail-under=90 tests/ansible

# promtool comes from Debian's prometheus package (.ci/run installs it).
RULES_DIR := roles/prometheus/files/rules
rules: $(STAMP) ## promtool check (duplicate-rule lint) and unit tests of the prometheus role's rules, plus their conventions
	promtool check rules --lint=duplicate-rules --lint-fatal $(RULES_DIR)/*.yml
	cd $(RULES_DIR)/tests && promtool test rules *.test.yml
	$(BIN)/python tools/check_rules.py $(RULES_DIR) docs/runbook.md docs/metrics.md

# Molecule test hosts: podman (runc, see .ci/containers.conf) running a local Debian 12 image.
export CONTAINERS_CONF ?= $(CURDIR)/.ci/containers.conf
.PHONY: image wheelhouse molecule demo demo-down

image: check-tools ## build the Debian 12 systemd test host image, only when missing or its recipe changed
	molecule/image/build.sh

$(WHEELHOUSE)/.built: $(STAMP) tools/build_wheelhouse.sh exporter/pyproject.toml $(shell find exporter/src -type f -not -name '*.pyc')
	tools/build_wheelhouse.sh $(WHEELHOUSE)
	touch $@

wheelhouse: $(WHEELHOUSE)/.built ## the agentmon wheel + dependency wheels hosts install offline (shipped in the collection)

# Scenarios share no host, network or state (each names its own containers and network), so
# `make molecule` runs them side by side, MOLECULE_JOBS at a time, longest first; most of a
# scenario is waiting on apt, systemd and timers, not CPU. New scenarios are picked up.
ALL_SCENARIOS := $(sort $(patsubst molecule/%/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))
SCENARIO_ORDER := multi_host default agent_host user_repo rollback
SCENARIOS := $(foreach s,$(SCENARIO_ORDER),$(filter $(s),$(ALL_SCENARIOS))) $(filter-out $(SCENARIO_ORDER),$(ALL_SCENARIOS))
MOLECULE_JOBS ?= 4
STEPS := $(BIN)/python tools/timed_steps.py --log-dir build/steps
# Each scenario's test host containers (the platform names in its molecule.yml, as podman GLOBs):
# the table shows the CPU they used beside the controller's. A scenario not listed shows "-".
HOSTS_agent_host := $(or $(AGENTMON_AGENT_HOST),agentmon-agent-host)
HOSTS_default := $(or $(AGENTMON_DEFAULT_HOST),agentmon-default-host)
HOSTS_multi_host := agentmon-mh-*
HOSTS_rollback := $(or $(AGENTMON_RB_HOST),agentmon-rb-host)
HOSTS_user_repo := agentmon-ur-*
scenario_lanes = $(foreach s,$(SCENARIOS),--lane molecule/$(s)='$(MAKE) --no-print-directory molecule SCENARIO=$(s)' \
  $(if $(HOSTS_$(s)),--containers molecule/$(s)='$(HOSTS_$(s))'))

# One scenario's log is kept in build/molecule-NAME.log; on failure its failed tests and tasks are
# repeated last, where a CI log cut in the middle still shows them. Without SCENARIO: every
# scenario (tools/timed_steps.py: a log per scenario, then the failures and a table of times).
molecule: $(STAMP) image wheelhouse $(COLLECTION_LINK) ## every Molecule scenario on real systemd hosts, side by side (SCENARIO=name for one)
ifdef SCENARIO
	@mkdir -p build
	set -o pipefail; PATH="$(CURDIR)/$(BIN):$$PATH" AGENTMON_TEST_IMAGE=$$(molecule/image/build.sh --ref) \
	  $(BIN)/molecule test --scenario-name $(SCENARIO) 2>&1 | tee build/molecule-$(SCENARIO).log \
	  || { echo '--- what failed (whole log: build/molecule-$(SCENARIO).log) ---'; \
	       grep -E '(FAILED|ERROR) | E   |fatal: |failed=[1-9]|Error: ' build/molecule-$(SCENARIO).log | grep -v RETRYING | tail -40; exit 1; }
else
	$(STEPS) --jobs $(MOLECULE_JOBS) $(scenario_lanes)
endif

demo: ## the whole stack on one local systemd host (installs what is missing; reuses what exists)
	bash .ci/install-tools
	@$(MAKE) --no-print-directory venv image wheelhouse collection-path
	tools/demo.sh up

demo-down: ## remove the demo host, its network and its generated secrets and CA (.demo/)
	tools/demo.sh down

# check-tools, then the venv, image and wheelhouse once; then lint+unit+rules in one lane beside
# the scenarios (TEST_JOBS lanes at once). Ends with a table of each step's wall time and result.
TEST_JOBS ?= 5
test: ## everything CI runs (host tools checked first), with a table of times at the end
	@$(PYTHON) tools/timed_steps.py --log-dir build/steps \
	  check-tools='$(MAKE) --no-print-directory check-tools' \
	  prerequisites='$(MAKE) --no-print-directory venv image wheelhouse collection-path' \
	  --jobs $(TEST_JOBS) $(scenario_lanes) \
	  --lane lint='$(MAKE) --no-print-directory lint' unit='$(MAKE) --no-print-directory unit' \
	  rules='$(MAKE) --no-print-directory rules'

# The benchmarks' peers (query-exporter) go into the same venv, only for make bench.
$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(BIN)/pip install --quiet -r requirements-bench.txt
	touch $@

bench: $(BENCH_STAMP) ## benchmarks (not part of test): serve vs baseline vs query-exporter; BENCH_ARGS=--huge adds 10M, --sizes 10000 is quick
	cd exporter && ../$(BIN)/python bench/bench_serve.py --svg ../docs/bench-refresh.svg $(BENCH_ARGS)

bench-attack: $(STAMP) ## hostile clients vs serve's HTTP layer (not part of test); BEFORE=main also runs main's server; BENCH_ARGS=--quick
	cd exporter && ../$(BIN)/python bench/bench_attack.py $(if $(BEFORE),--before $(BEFORE)) $(BENCH_ARGS)

# Against a converged default scenario host (flock ... molecule converge -s default first):
# nginx.conf of BEFORE (default main) and this tree's, side by side; the host's is put back.
BEFORE_FLOOD ?= main
bench-flood: $(STAMP) ## wrong-password flood through nginx on the default scenario's host, before vs after (not part of test)
	cd exporter && PATH="$(CURDIR)/$(BIN):$$PATH" ../$(BIN)/python bench/bench_flood.py --before $(BEFORE_FLOOD) $(BENCH_ARGS)

# Soak: 8 hook writers, prunes, scrapes, an exporter restart and a restored backup (~32 min).
bench-soak: $(STAMP) ## soak of 30 min (not part of test): writers, prunes, restart, restore; BENCH_ARGS=--seconds 90 is quick
	cd exporter && ../$(BIN)/python bench/bench_soak.py --svg ../docs/bench-soak.svg $(BENCH_ARGS)

# Prune at 10M invocations: needs ~22 GB for the file and twice what is left for --reclaim.
bench-prune: $(STAMP) ## agentmon prune on 10M seeded invocations, exporter refresh meanwhile (not part of test); BENCH_ARGS=--rows 200000 is quick
	cd exporter && ../$(BIN)/python bench/bench_prune.py $(BENCH_ARGS)

clean: ## remove the venv and caches
	rm -rf $(VENV) exporter/.pytest_cache exporter/.coverage .ruff_cache
