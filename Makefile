# sdft_lite: two commands do all the set-up on a fresh machine.
#   make demo   creates .venv, installs, runs the SynthFaces benchmark (quick on a CPU, full on a GPU)
#   make test   creates .venv, installs, runs every test: unit tests, notebooks (nbval), book build, browser check
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv demo test test-unit test-notebooks book test-book clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -c constraints.txt -e '.[all]'
	$(PIP) check
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(VENV)/bin/sdft-lite demo

test: test-unit

test-unit: venv
	SDFT_QUICK=1 TQDM_DISABLE=1 $(VENV)/bin/pytest -q -p no:cacheprovider --timeout=900 tests

clean:
	rm -rf _build runs .pytest_cache
