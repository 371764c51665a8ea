# Two commands do all set-up on a fresh machine:
#   make run    create .venv, install hpsearch, run a small study on the embedded default (SQLite)
#   make test   create .venv, install hpsearch with dev extras, run the whole test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench lesson ui clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# The CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/hpsearch run

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,bench]'
	$(BIN)/python -m bench

# Every lesson experiment at its default size; the README's figures (docs/lesson/).
LESSONS := normalization gradients initialization optimizers decay priorities random-vs-grid
lesson: $(STAMP)
	for n in $(LESSONS); do $(BIN)/hpsearch lesson $$n --out docs/lesson || exit 1; done

ui: $(STAMP)
	$(BIN)/hpsearch ui

clean:
	rm -rf $(VENV) hpsearch.db mlruns.db mlartifacts
