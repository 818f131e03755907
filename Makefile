# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv if missing, installs bayescale, fits the bundled Chinchilla runs, prints the plan
#   make test   same set-up, then the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-slow lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,fast]"
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p $(OUT)
	$(BIN)/bayescale fit chinchilla --law chinchilla --seed 1 --out $(OUT)/chinchilla.nc
	$(BIN)/bayescale plan $(OUT)/chinchilla.nc --compute 5.76e23
	$(BIN)/bayescale plot $(OUT)/chinchilla.nc frontier --out $(OUT)/chinchilla_frontier.png

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check bayescale tests benchmarks
	$(BIN)/ruff format --check bayescale tests benchmarks
	$(BIN)/mypy bayescale
	$(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff format bayescale tests benchmarks
	$(BIN)/ruff check --fix bayescale tests benchmarks

clean:
	rm -rf $(OUT) build dist *.egg-info
