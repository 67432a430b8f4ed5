# One command runs every gate: `make test`. It sets up what it needs on a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: test test-fast lab lint typecheck imports unit bench debs venv clean

test: venv debs lint typecheck imports unit bench

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# The lab: deploy/examples/ in the emulated API server, a network namespace per node running the
# real speaker (its agent here), BIRD as the ToR; prints what the ToR learned and follows it
# until Ctrl-C. `make lab LAB_ARGS=--once` prints once converged and exits. Needs root.
lab: venv debs
	$(PY) -m lab $(LAB_ARGS)

# Real BGP daemons for the lab (we run as root on these machines).
debs:
	testing/install-debs.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy

imports: venv
	$(VENV)/bin/lint-imports

# pytest exits 5 when it collected no test; that is a failure here, as is any other non-zero code.
unit: venv
	$(VENV)/bin/pytest

# The edit loop: pure tests only, no BGP daemons, namespaces, real kopf or seconds of real timers
# (markers lab, netns, slow in pyproject.toml), over both cores (pytest-xdist). 1259 tests, ~62 s
# of CPU: 80 s wall with a full `make test`, a CPU hog and two other engineers' work beside it
# (104 s there on one core); never measured idle. `make test` runs everything, on one core.
test-fast: venv
	$(VENV)/bin/pytest -q -n 2 -m "not lab and not netns and not slow"

bench: venv
	$(PY) -m benchmarks --short

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
