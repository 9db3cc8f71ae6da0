# The two set-up commands of the README: `make demo` (train -> analyse -> app) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip

.PHONY: env env-dev demo demo-quick test

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PIP) install -q -r requirements-dev.txt
	touch $@

env: $(VENV)/.installed
env-dev: $(VENV)/.installed-dev

demo: env
	$(VENV)/bin/aselect demo

demo-quick: env
	$(VENV)/bin/aselect demo --quick

test: env-dev
	$(PY) -m pytest -q
