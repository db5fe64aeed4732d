# `make run` sets up from nothing and serves; `make test` sets up and runs every test and check.
#
# Python packages go into .venv only: `make run` installs what serving needs, `make test` adds
# the development tools (pytest, the openai SDK, ruff, mypy, schemathesis) and promtool. The
# servers the tests start throwaway copies of (redis-server, PostgreSQL 15, Chromium) are
# Debian's packages: when missing, `make test` installs them system-wide with apt-get (as root;
# see test-servers below).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SERVING := $(VENV)/.installed-serving
DEVELOPMENT := $(VENV)/.installed-development

.PHONY: run test lint typecheck pytest pytest-postgres layout promtool test-servers screenshots bench bench-deps bench-speed clean

$(BIN)/python:
	@echo "== creating $(VENV) (a virtual environment for this project; nothing system-wide)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# PYTHONWARNINGS=ignore: setuptools prints a boxed notice about editable installs on every build,
# meant for packagers, not for someone running `make run`.
$(SERVING): pyproject.toml | $(BIN)/python
	@echo "== installing the gateway and what serving needs into $(VENV)"
	PYTHONWARNINGS=ignore $(BIN)/pip install --progress-bar on --editable .
	@touch $@

# constraints.txt: versions that resolve without pip backtracking through boto3 releases.
$(DEVELOPMENT): pyproject.toml constraints.txt $(SERVING)
	@echo "== installing the development tools into $(VENV): pytest, openai, ruff, mypy, schemathesis"
	PYTHONWARNINGS=ignore $(BIN)/pip install --progress-bar on -c constraints.txt --editable '.[dev]'
	@touch $@

run: $(SERVING)
	$(BIN)/gateway quickstart

test: $(DEVELOPMENT) lint typecheck test-servers pytest pytest-postgres layout promtool

lint: $(DEVELOPMENT)
	$(BIN)/ruff check gateway simulator tests bench
	$(BIN)/ruff format --check gateway simulator tests bench

typecheck: $(DEVELOPMENT)
	$(BIN)/mypy

# The tests run in PYTEST_WORKERS processes (pytest-xdist): most of their time is spent waiting
# on servers and processes they start, so 4 on this 2-core machine take half the time of 1.
PYTEST_WORKERS ?= 4

pytest: $(DEVELOPMENT)
	$(BIN)/pytest -q -n $(PYTEST_WORKERS)

# The end-to-end tests again, each gateway on a fresh PostgreSQL database instead of SQLite
# (those that reach into SQLite itself are marked sqlite_only and left out).
pytest-postgres: $(DEVELOPMENT)
	TEST_DATABASE=postgres $(BIN)/pytest -q -n $(PYTEST_WORKERS) tests/e2e -m "not sqlite_only and not one_pass"

# Tests mirror the source: which modules have no unit-test file yet (tests/test_layout.py keeps
# the list from growing).
layout: $(DEVELOPMENT)
	@$(BIN)/python -m tests.layout

# Prometheus' own checks of deploy/prometheus: the config, the alert rules, and the rules' unit
# tests. promtool is unpacked into .venv/bin from Debian's `prometheus` package (apt-get download:
# nothing installed system-wide); a promtool already on the PATH serves as well.
$(BIN)/promtool: | $(BIN)/python
	@command -v promtool >/dev/null || { \
		echo "== fetching promtool into $(BIN) from Debian's prometheus package (deploy/install-promtool)"; \
		deploy/install-promtool $(BIN) || true; }

promtool: $(BIN)/promtool
	@tool=$$(test -x $(BIN)/promtool && echo $(BIN)/promtool || command -v promtool || true); \
	if [ -n "$$tool" ]; then \
		$$tool check config deploy/prometheus/prometheus.yml && \
		$$tool check rules deploy/prometheus/alerts.yml && \
		$$tool test rules deploy/prometheus/alerts.test.yml; \
	else \
		echo "promtool could not be installed here (no apt-get download): deploy/prometheus was checked by pytest only"; \
	fi

# Tests start throwaway redis-servers and PostgreSQL servers (in temporary directories, on free
# ports): Debian's packages, installed with apt-get when missing and root; otherwise the tests
# that need them fail saying how to get them.
test-servers:
	@deploy/install-redis || true
	@deploy/install-postgres || true
	@deploy/install-chromium || true

# The console screenshots in docs/console.md (docs/console-*.png), made by its browser test.
screenshots: $(DEVELOPMENT) test-servers
	CONSOLE_SCREENSHOTS=docs $(BIN)/pytest -q tests/e2e/test_console_browser.py

bench: $(DEVELOPMENT)
	$(BIN)/python bench/run_all.py

# What bench/speed.py and bench/replicas.py start throwaway copies of: the test servers, and
# nginx (the reference proxy and static file server).
bench-deps: test-servers
	@deploy/install-nginx || true

# Issue 27's table: this tree beside an older revision (REV) and nginx, in one run.
REV ?= b7f0090
bench-speed: $(DEVELOPMENT) bench-deps
	$(BIN)/python bench/speed.py --rev $(REV)

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
