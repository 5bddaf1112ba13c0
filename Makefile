# Two entry points: `make book` (execute every chapter on the cpu profile, build _build/html) and
# `make test`. Both create .venv and install the pinned requirements on first use.
PYTHON ?= python3
PROFILE ?= cpu
VENV := .venv
BIN := $(VENV)/bin

.PHONY: book test bench clean-book chromium

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

book: $(VENV)/.installed
	$(BIN)/python -m conceptspace.book --profile $(PROFILE) $(ARGS)

test: $(VENV)/.installed chromium
	$(BIN)/python -m pytest $(ARGS)

chromium:  # Debian's browser for tests/test_browser.py (never a browser download)
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium >/dev/null) || \
		(echo "tests/test_browser.py needs Debian's chromium: apt-get install chromium" && exit 1)

bench: $(VENV)/.installed
	$(BIN)/python -m conceptspace.bench $(ARGS)

clean-book:  # the rendered book and executed chapters; the run store (_build/store) is kept
	rm -rf _build/html _build/stage _build/results _build/.conceptspace_static _build/.doctrees
