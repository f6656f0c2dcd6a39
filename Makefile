# The README's commands: `make demo` (set-up if needed, then the demo) and `make test`.
VENV := .venv/bin

.PHONY: setup test lint fast demo data

setup:
	./scripts/setup.sh

# set up on first use, so `make demo` / `make test` work on a fresh clone
$(VENV)/opinionmap: pyproject.toml
	./scripts/setup.sh
	touch $@

lint: $(VENV)/opinionmap
	$(VENV)/ruff check src tests scripts benchmarks
	$(VENV)/ruff format --check src tests scripts benchmarks
	$(VENV)/mypy

# The whole suite, slow sampling tests included (they are sized for CI).
test: lint
	$(VENV)/pytest --durations=15

# Everything but the sampling tests, for a quick loop while editing.
fast: $(VENV)/opinionmap
	$(VENV)/pytest -m "not slow" -x -q

# The main job: the whole pipeline on the bundled Kazakhstan data, at publication
# quality (every question in models/ sampled to convergence, poststratified by region
# and the report's groups) -> demo-out/report.html. `opinionmap demo --quick` is the
# smoke run (few draws, labelled not converged).
demo: $(VENV)/opinionmap
	$(VENV)/opinionmap demo --out demo-out

# Rebuild data/kazakhstan/ from the official figures (seeded; identical output each run).
data: $(VENV)/opinionmap
	$(VENV)/python scripts/build_kazakhstan_data.py
