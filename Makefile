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

.PHONY: run test venv tools lint check-config dashboards bench clean

run: venv tools
	@if $(BIN)/pulse check-config --needs-victoria pulse.yml; then scripts/ensure-tools.sh --victoria; fi
	$(BIN)/pulse up --demo

test: venv tools
	@scripts/ensure-tools.sh --victoria
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
