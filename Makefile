# The README's commands: `make demo` (set-up if needed, then the demo) and `make test`.
VENV := .venv/bin
DEMO := out/demo

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

# End to end on the bundled Kazakhstan data: check the data, fit, summarise, check the fit.
demo: $(VENV)/opinionmap
	$(VENV)/opinionmap survey check data/kazakhstan/survey_2020.csv
	$(VENV)/opinionmap frame check data/kazakhstan/frame_2020.csv --codebook data/kazakhstan/survey_2020.codebook.toml
	$(VENV)/opinionmap fit models/presence_russia.toml --out $(DEMO)/presence_russia.nc --seed 2020
	$(VENV)/opinionmap summary $(DEMO)/presence_russia.nc
	$(VENV)/opinionmap ppc $(DEMO)/presence_russia.nc --out $(DEMO)/presence_russia_ppc.csv --plot $(DEMO)/presence_russia_ppc.png
	@echo "demo outputs are in $(DEMO)/"

# Rebuild data/kazakhstan/ from the official figures (seeded; identical output each run).
data: $(VENV)/opinionmap
	$(VENV)/python scripts/build_kazakhstan_data.py
