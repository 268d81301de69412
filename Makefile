# payrail: the two commands that matter are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS := never
# uv from PATH, else the copy pip installs (`make install` puts it there on a fresh machine).
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PYTEST_ARGS ?=

.PHONY: help install run test lint typecheck unit bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: ## install uv (from PyPI) when missing, then the locked workspace
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@$(UV) sync --frozen --python python3

run: install ## start Kafka, PostgreSQL, localstripe and the four services in the foreground
	@$(UV) run --frozen payrail dev run

test: install lint typecheck ## lint, type-check and run the whole suite (real Kafka + PostgreSQL)
	@$(UV) run --frozen pytest $(PYTEST_ARGS)

unit: install ## only the fast unit tests (pure logic, no broker or database)
	@$(UV) run --frozen pytest tests/unit $(PYTEST_ARGS)

lint: install ## ruff
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check .

typecheck: install ## mypy (strict)
	@$(UV) run --frozen mypy

bench: install ## run the benchmark scripts (see docs/benchmarks.md)
	@for b in benchmarks/*.py; do echo "== $$b"; $(UV) run --frozen python $$b || exit 1; done

clean: ## remove the local stack's state (Kafka and PostgreSQL data) and caches
	rm -rf .state .pytest_cache .mypy_cache .ruff_cache
