# Ferry: `make run` serves the embedded default; `make test` runs every test tier.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run test test-unit lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[test]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/ferry migrate
	@# The first run creates the demo (which prints its keys); later runs show the kept keys.
	@if [ -f var/demo-keys.txt ]; then \
		echo "Demo API keys (var/demo-keys.txt):"; sed 's/^/  /' var/demo-keys.txt; \
	else $(BIN)/ferry demo; fi
	$(BIN)/ferry serve

test: $(VENV)/.installed-test
	$(BIN)/pytest -q tests

test-unit: $(VENV)/.installed-test
	$(BIN)/pytest -q tests/unit tests/functional

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Every benchmark in turn, then bench/REPORT.md; `make bench BENCH_ARGS=--quick` checks it fast.
bench: $(VENV)/.installed-test
	$(BIN)/python bench/report.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
