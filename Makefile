# The two commands of the quick start: `make run` and `make test`.
# Each creates .venv, installs Pulse into it and makes sure Prometheus and
# Alertmanager are installed (Debian packages) before doing its job.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# Most tests wait on real servers, not the CPU: three workers, one test file each.
PYTEST_PARALLEL ?= -n 3 --dist loadfile

# Client SDKs nobody here wrote (tests/sdk/package.json), for tests/exporters/events/test_sdks.py.
SDK_DIR := $(VENV)/sdk-node
SDK_STAMP := $(SDK_DIR)/.installed-stamp

.PHONY: run test venv tools sdk lint check-config dashboards bench clean

run: venv tools
	$(BIN)/pulse up --demo

test: venv tools sdk
	$(BIN)/ruff check .
	$(BIN)/pulse check-config pulse.yml
	$(BIN)/pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

tools:
	@scripts/ensure-tools.sh

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
