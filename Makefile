# `make demo` and `make test` each do all of their own set-up in .venv.
VENV   := .venv
PYTHON := $(VENV)/bin/python
PY     := $(shell command -v python3.11 || command -v python3)
PIP    := $(PYTHON) -m pip install --quiet -c constraints.txt

.PHONY: demo test test-fast bench clean

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

# The full suite (CI: .ci/run); the 25 slowest tests are listed so a new slow one shows.
test: $(VENV)/.installed-dev
	$(PYTHON) -m pytest --durations=25

# The fast lane, for while you work: every test not marked slow (end-to-end runs, SLURM clusters,
# the browser, pdflatex, long trainings); every harness module is imported in it (test_structure.py).
test-fast: $(VENV)/.installed-dev
	$(PYTHON) -m pytest -m "not slow"

bench: $(VENV)/.installed
	$(PYTHON) benchmarks/overhead.py

clean:
	rm -rf $(VENV) results/smoke
