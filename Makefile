# whysim: `make demo` indexes the bundled samples and serves the web UI; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DATA_DIR ?= whysim-data
PORT ?= 8000
# The browser tests drive Debian's Chromium (never a downloaded one); `make test` installs it when missing,
# and Debian's redis-server and memcached for the shared rate-limit test.
CHROMIUM := /usr/bin/chromium
REDIS := /usr/bin/redis-server
MEMCACHED := /usr/bin/memcached
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# torch/torchvision are pinned to the wheels this machine's pip can install offline.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: venv install install-test chromium rate-limit-stores demo test bench lint clean

$(VENV)/.installed-base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet $(TORCH_PINS)
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-base pyproject.toml
	$(PIP) install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed-base

install-test: $(VENV)/.installed-test

chromium:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends chromium chromium-driver; }

rate-limit-stores:
	@test -x $(REDIS) && test -x $(MEMCACHED) || { $(SUDO) apt-get update && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends redis-server memcached; }

demo: install
	$(VENV)/bin/whysim index samples/flowers --data-dir $(DATA_DIR)
	$(VENV)/bin/whysim stats --data-dir $(DATA_DIR)
	$(VENV)/bin/whysim serve --data-dir $(DATA_DIR) --port $(PORT) --production

lint: install-test
	$(VENV)/bin/ruff check indexer search webui migrations tests setup.py
	$(VENV)/bin/lint-imports

# Two workers for everything but the tests whose assertions are timings; those run after, alone.
# The workers share one Milvus server, which the controller starts (tests/conftest.py).
test: lint chromium rate-limit-stores
	$(PY) -m pytest -q -n 2 -m "not serial"
	$(PY) -m pytest -q -m serial

bench: install-test
	$(PY) tests/benchmarks/run_all.py $(ARGS)

clean:
	rm -rf $(DATA_DIR) .pytest_cache test-artifacts
