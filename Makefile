# Two commands do all set-up on a fresh machine:
#   make run    create .venv, install hpsearch, run a small study on the embedded default (SQLite)
#   make test   create .venv, install hpsearch with dev extras, run the whole test suite
# While developing:
#   make check  lint, types and the fast tier of the tests (`-m "not slow"`): a few minutes
#   make lint   ruff (rules and format) and mypy
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check lint bench lesson ui clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# The CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/hpsearch run

# The whole suite, as CI runs it (`.ci/run`); the 20 slowest tests are listed at the end.
test: $(STAMP)
	$(BIN)/python -m pytest --durations=20 $(PYTEST_ARGS)

check: lint
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

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
