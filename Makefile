# The README's commands. `make setup` once, then `make demo` and `make test`.
VENV := .venv/bin

.PHONY: setup test lint fast demo data

setup:
	./scripts/setup.sh

lint:
	$(VENV)/ruff check src tests scripts benchmarks
	$(VENV)/ruff format --check src tests scripts benchmarks
	$(VENV)/mypy

# The whole suite, slow sampling tests included (they are sized for CI).
test: lint
	$(VENV)/pytest

# Everything but the sampling tests, for a quick loop while editing.
fast:
	$(VENV)/pytest -m "not slow" -x -q

# Rebuild data/kazakhstan/ from the official figures (seeded; identical output each run).
data:
	$(VENV)/python scripts/build_kazakhstan_data.py
