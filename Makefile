# The two commands of the quick start: `make run` and `make test`.
# Each creates .venv, installs Pulse into it and makes sure the Debian packages it
# needs are installed before doing its job. `make run` installs only what running
# needs (no test extras; Prometheus and Alertmanager); `make test` adds the test
# extras and the peers the tests start (node_exporter, poppler-utils).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
RUNTIME_STAMP := $(VENV)/.runtime-stamp
PYTEST_ARGS ?=
# Most tests wait on real servers, not the CPU: three workers, one test file each.
PYTEST_PARALLEL ?= -n 3 --dist loadfile

# Client SDKs nobody here wrote (tests/sdk/package.json), for tests/exporters/events/test_sdks.py.
SDK_DIR := $(VENV)/sdk-node
SDK_STAMP := $(SDK_DIR)/.installed-stamp

.PHONY: run test venv runtime tools run-tools sdk lint check-config dashboards bench clean

run: runtime run-tools
	@echo "make run: starting the stack with the demo platform (pulse up --demo; Ctrl-C stops it)"
	$(BIN)/pulse up --demo

test: venv tools sdk
	@scripts/fetch-rule-collections.sh
	$(BIN)/ruff check .
	$(BIN)/pulse check-config pulse.yml
	$(BIN)/pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || { echo "make: creating the virtualenv $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "make: installing Pulse with its test extras into $(VENV) (pip)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP) $(RUNTIME_STAMP)

# What running needs: Pulse and its runtime dependencies, no test extras.
runtime: $(RUNTIME_STAMP)

$(RUNTIME_STAMP): pyproject.toml
	@test -x $(BIN)/python || { echo "make run: creating the virtualenv $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "make run: installing Pulse and its runtime dependencies into $(VENV) (pip; a minute on a fresh machine)"
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar off -e .
	@echo "make run: Python packages installed"
	touch $(RUNTIME_STAMP)

tools:
	@scripts/ensure-tools.sh test

run-tools:
	@scripts/ensure-tools.sh run

sdk: $(SDK_STAMP)

$(SDK_STAMP): tests/sdk/package.json tests/sdk/package-lock.json
	mkdir -p $(SDK_DIR)
	cp tests/sdk/package.json tests/sdk/package-lock.json $(SDK_DIR)/
	cd $(SDK_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $(SDK_STAMP)

lint: venv
	$(BIN)/ruff check .

check-config: venv
	$(BIN)/pulse check-config pulse.yml

dashboards: venv
	$(BIN)/python -m grafana.generate

bench: venv tools
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pulse .pytest_cache
