# make test: set up .venv, lint, type-check and run the tests.
# make demo: run the auth service and a protected example API on localhost.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench soak lint typecheck pytest clean chromium

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
		(echo "bearerguard needs Python 3.10 or newer (PYTHON=$(PYTHON))" >&2; exit 1)
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

# The panel's browser tests drive Debian's Chromium: installed with apt when missing;
# where that cannot be done, one line says what to install.
CHROMIUM := /usr/bin/chromium
chromium:
	@test -x $(CHROMIUM) || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -q >/dev/null 2>&1 && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 && \
		test -x $(CHROMIUM); } || \
		{ echo "make test needs Chromium at $(CHROMIUM): install Debian's chromium package (apt-get install chromium)" >&2; exit 1; }

test: chromium lint typecheck pytest

# The auth service and the protected Starlette example on 127.0.0.1, over SQLite.
demo: $(STAMP)
	$(BIN)/bearerguard demo

# Reliability suites with bigger counts (tens of minutes).
soak: $(STAMP)
	BEARERGUARD_SOAK=1 $(BIN)/pytest -q --timeout=900 tests/reliability

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Benchmarks (about 3 minutes): results in bench/results/, table in docs/benchmarks.md;
# the panel and admin API rows (bench/panel.py) in bench/results/panel-latest.json.
bench: $(STAMP)
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python -m bench --loopback --install-missing
	$(BIN)/python -m bench.panel
