# `make run` sets up from nothing and serves; `make test` sets up and runs every test and check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest promtool bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/gateway quickstart

test: $(STAMP) lint typecheck pytest promtool

lint: $(STAMP)
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

# Prometheus' own checks of deploy/prometheus: the config, the alert rules, and the rules' unit
# tests. promtool comes from Debian's `prometheus` package, installed here when this machine can.
promtool:
	@command -v promtool >/dev/null || deploy/install-promtool || true
	@if command -v promtool >/dev/null; then \
		promtool check config deploy/prometheus/prometheus.yml && \
		promtool check rules deploy/prometheus/alerts.yml && \
		promtool test rules deploy/prometheus/alerts.test.yml; \
	else \
		echo "promtool cannot be installed here: deploy/prometheus was checked by pytest only"; \
	fi

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
