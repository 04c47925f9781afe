# `make demo` and `make test` each do all of their own set-up in .venv.
VENV   := .venv
PYTHON := $(VENV)/bin/python
PY     := $(shell command -v python3.11 || command -v python3)
PIP    := $(PYTHON) -m pip install --quiet -c constraints.txt

.PHONY: demo test bench clean

$(PYTHON):
	$(PY) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(PYTHON)
	$(PIP) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(PYTHON)
	$(PIP) -e '.[dev]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/harness run suites/smoke.yaml

test: $(VENV)/.installed-dev
	$(PYTHON) -m pytest

bench: $(VENV)/.installed
	$(PYTHON) benchmarks/overhead.py

clean:
	rm -rf $(VENV) results/smoke
