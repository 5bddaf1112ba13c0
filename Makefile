# Two entry points: `make book` (execute every chapter on the cpu profile, build _build/html) and
# `make test`. Both create .venv and install the pinned requirements on first use.
PYTHON ?= python3
PROFILE ?= cpu
VENV := .venv
BIN := $(VENV)/bin

.PHONY: book test check lock bench clean-book chromium

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

book: $(VENV)/.installed
	$(BIN)/python -m conceptspace.book --profile $(PROFILE) $(ARGS)

test: $(VENV)/.installed chromium
	$(BIN)/ruff check lib tests
	$(BIN)/python -m pytest $(ARGS)

check: $(VENV)/.installed  # the fast loop: lint and the unit tests (no chapter, browser or training tests)
	$(BIN)/ruff check lib tests
	$(BIN)/python -m pytest -q -m "not chapter and not browser and not slow" $(ARGS)

chromium:  # Debian's browser for tests/test_browser.py (never a browser download); without root it is skipped
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		echo "could not install Debian's chromium: tests/test_browser.py will skip (CI: fail)"

lock:  # refresh requirements.txt: resolve pyproject.toml's pins (all extras) in a fresh venv, freeze every package
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q ".[test,ray]"
	head -3 requirements.txt > .lock-venv/lock.txt
	.lock-venv/bin/pip freeze --exclude-editable | grep -iv '^conceptspace' | sed 's/+cpu$$//' >> .lock-venv/lock.txt  # any torch build
	mv .lock-venv/lock.txt requirements.txt && rm -rf .lock-venv

bench: $(VENV)/.installed
	$(BIN)/python -m conceptspace.bench $(ARGS)

clean-book:  # the rendered book and executed chapters; the run store (_build/store) is kept
	rm -rf _build/html _build/stage _build/results _build/.conceptspace_static _build/.doctrees
