# sdft_lite: two commands do all the set-up on a fresh machine.
#   make demo   creates .venv, installs, runs the SynthFaces benchmark (quick on a CPU, full on a GPU)
#   make test   creates .venv, installs, runs every test: unit tests, notebooks (nbval), book build, browser check
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.package-lock.json
export PIP_DISABLE_PIP_VERSION_CHECK := 1
QUICK := SDFT_QUICK=1 TQDM_DISABLE=1

.PHONY: venv demo test test-unit test-notebooks book test-book chromium clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -c constraints.txt -e '.[all]'
	$(PIP) check
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(VENV)/bin/sdft-lite demo

test: test-unit test-notebooks test-book

test-unit: venv
	$(QUICK) $(VENV)/bin/pytest -q -p no:cacheprovider --timeout=900 --durations=10 tests \
		--ignore=tests/book/test_site.py

# a fresh model cache, so that the chapters train what they need exactly as on a new machine
test-notebooks: venv
	rm -rf _build/sdft_home
	SDFT_LITE_HOME=$(CURDIR)/_build/sdft_home $(QUICK) $(VENV)/bin/pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env \
		--nbval-sanitize-with tests/nbval/sanitize.cfg notebooks/

$(NODE_STAMP): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund

chromium:
	command -v chromium >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q chromium)

book: venv $(NODE_STAMP)
	$(PY) book/tools/sync_toc.py --check
	$(PY) book/tools/chapter_times.py
	$(PY) book/tools/reproduction_table.py
	$(PY) book/tools/synthfaces_tables.py
	$(PY) book/tools/rivals_table.py
	$(PY) book/tools/editing_tables.py
	$(PY) book/tools/exercises_page.py
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	$(PY) book/tools/vendor_js.py

test-book: book chromium
	SDFT_BOOK_SITE_REQUIRED=1 $(VENV)/bin/pytest -q -p no:cacheprovider tests/book/test_site.py tests/book/test_long_lines.py

clean:
	rm -rf _build runs .pytest_cache
