# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv if missing, installs bayescale, fits the bundled Chinchilla runs, prints the plan
#   make test   same set-up, then the test suite
# The venv gets the newest supported Python found (scripts/find-python: python3.13 or python3.12 on
# PATH, else pyenv's) and exactly the versions in constraints.txt, the lock the tests passed with.
#   make test PY=3.12 VENV=.venv-py3.12      another supported version, in a venv of its own
#   make test PYTHON=/path/to/python3.13     a given interpreter
PY ?=
PYTHON ?=
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out
STAMP := $(VENV)/.installed-stamp
LOCK := constraints.txt
#: The Python versions bayescale supports (requires-python in pyproject.toml).
SUPPORTED := 3.12 3.13

.PHONY: demo test test-slow test-browser browser lint format docs clean versions lock

# A venv of an unsupported Python (an earlier release's 3.11 one), or of another version than
# PY/PYTHON ask for, is made anew.
$(STAMP): pyproject.toml $(LOCK)
	@have="$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)"; \
	if [ -n "$(PY)$(PYTHON)" ] || ! echo " $(SUPPORTED) " | grep -q " $$have "; then \
		python="$(PYTHON)"; [ -n "$$python" ] || python="$$(scripts/find-python $(PY))" || exit 1; \
		want="$$($$python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" || exit 1; \
		if ! echo " $(SUPPORTED) " | grep -q " $$want "; then \
			echo "error: $$python is Python $$want; bayescale needs one of $(SUPPORTED)" >&2; exit 1; fi; \
		if [ "$$have" != "$$want" ]; then \
			echo "creating $(VENV) with $$python (Python $$want)"; rm -rf $(VENV); $$python -m venv $(VENV) || exit 1; fi; \
	fi
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e ".[dev,fast]"
	touch $(STAMP)

versions: $(STAMP)
	@$(BIN)/python -c "import sys, importlib.metadata as m; print('Python', sys.version.split()[0], '|', ', '.join(p + ' ' + m.version(p) for p in ('pymc', 'pytensor', 'arviz', 'arviz-stats', 'numpyro', 'jax', 'numpy', 'xarray')))"

demo: versions
	mkdir -p $(OUT)
	$(BIN)/bayescale fit chinchilla --law chinchilla --seed 1 --out $(OUT)/chinchilla.nc
	$(BIN)/bayescale plan $(OUT)/chinchilla.nc --compute 5.76e23
	$(BIN)/bayescale plot $(OUT)/chinchilla.nc frontier --out $(OUT)/chinchilla_frontier.png

# One pytest worker per core (pytest-xdist); a test file runs on one worker, so a module's shared
# fits are made once. WORKERS=0 runs the suite in this process.
WORKERS ?= auto
test: versions
	$(BIN)/python -m pytest -q -n $(WORKERS) --dist loadfile

test-slow: versions
	$(BIN)/python -m pytest -q -m slow -n $(WORKERS) --dist loadfile

# Headless Chromium for the report's layout test (tests/clients/test_report_browser.py, skipped
# without it): Debian's chromium package, installed with apt-get (as root, or through sudo).
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ -x $(CHROMIUM) ]; then $(CHROMIUM) --version; \
	else \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium \
			&& $(CHROMIUM) --version; \
	fi

# The report laid out by headless Chromium at 1280 px: no table or figure wider than the page.
test-browser: browser versions
	$(BIN)/python -m pytest -q -m slow tests/clients/test_report_browser.py

lint: $(STAMP)
	$(BIN)/ruff check bayescale _bayescale_cli.py _bayescale_cluster.py tests benchmarks
	$(BIN)/ruff format --check bayescale _bayescale_cli.py _bayescale_cluster.py tests benchmarks
	$(BIN)/mypy bayescale _bayescale_cli.py _bayescale_cluster.py
	$(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff format bayescale _bayescale_cli.py _bayescale_cluster.py tests benchmarks
	$(BIN)/ruff check --fix bayescale _bayescale_cli.py _bayescale_cluster.py tests benchmarks

# Rewrite the lock from the venv, after `make test` passed in it (on the lowest supported Python,
# so that no package is pinned to a version the lowest cannot install).
lock: $(STAMP)
	{ echo "# Versions of every package the tests passed with (make lock; pip install -c $(LOCK) ...)."; \
	  echo "# $$($(BIN)/python --version), $$(uname -sm)"; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^pip=='; } > $(LOCK)

# The documentation site (Sphinx, PyData theme, numpydoc, MyST-NB) into docs/_build/html; warnings are
# errors, so a broken reference or docstring fails the build. The notebooks are shown with their stored
# outputs, not run (make test runs them).
DOCS_OUT ?= docs/_build/html
# Sphinx 9.2 needs Python 3.13, so the docs extra is installed by this target only (not by demo or test).
DOCS_STAMP := $(VENV)/.docs-stamp
$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e ".[dev,fast,docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/python -m sphinx -W --keep-going -q -b html docs $(DOCS_OUT)
	@echo "docs: $(DOCS_OUT)/index.html"

clean:
	rm -rf $(OUT) build dist *.egg-info docs/_build docs/api/generated docs/notebooks
