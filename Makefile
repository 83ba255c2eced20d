# normstyle: every target sets up .venv itself (torch pinned to the CPU build 2.13.0).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   ?= ../shared/data
# The demo must finish in under 5 minutes on a 2-core CPU, install included.
DEMO_OPTIONS ?= --size 256 --iterations 150 --seed 1

.PHONY: demo test lint bench bench-normalize generalization means lab clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt setuptools
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt --no-build-isolation -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/normstyle stylize builtin:grace_hopper builtin:swirls -o demo/out.png $(DEMO_OPTIONS)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

bench-normalize: $(STAMP)
	NORMSTYLE_DATA=$(DATA) $(BIN)/python benchmarks/bench_normalize.py

generalization: $(STAMP)
	NORMSTYLE_DATA=$(DATA) $(BIN)/python benchmarks/generalization.py

means: $(STAMP)
	NORMSTYLE_DATA=$(DATA) $(BIN)/python scripts/regenerate_means.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache demo
