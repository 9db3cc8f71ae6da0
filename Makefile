# The two set-up commands of the README: `make demo` (train -> analyse -> app) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip

.PHONY: env env-dev browser demo demo-quick test bench bench-quick

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PIP) install -q -r requirements-dev.txt
	touch $@

# Debian's Chromium: kaleido exports static figures with it and the browser test drives it (never a download
# of a browser build of its own).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }

env: $(VENV)/.installed
env-dev: $(VENV)/.installed-dev

demo: env browser
	$(VENV)/bin/aselect demo

demo-quick: env browser
	$(VENV)/bin/aselect demo --quick

test: env-dev browser
	$(PY) -m pytest -q

# The measured tables of bench/README.md (hours on 2 CPU cores; one thread per process, two processes fill
# both cores best) and their smoke versions (about a minute).
bench: env browser
	$(PY) bench/selector_vs_uniform.py
	$(PY) bench/seed_table.py

bench-quick: env browser
	$(PY) bench/selector_vs_uniform.py --quick
	$(PY) bench/seed_table.py --quick
