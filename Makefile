# The two commands: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Auth0's own command-line tools that the end-to-end tests drive (tests/tools/package-lock.json)
NODE_TOOLS := tests/tools/node_modules/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install test-sqlite test-postgres bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(NODE_TOOLS): tests/tools/package.json tests/tools/package-lock.json
	cd tests/tools && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_TOOLS)

install: $(STAMP)

## make run: install, migrate the embedded SQLite database, seed the demo, serve on http://127.0.0.1:8000
run: $(STAMP)
	BASTION_ISSUER=http://$(HOST):$(PORT) $(BIN)/bastion demo
	BASTION_ISSUER=http://$(HOST):$(PORT) BASTION_DEMO=true $(BIN)/bastion serve --host $(HOST) --port $(PORT)

## make test: install what the tests need and run them all (SQLite, then PostgreSQL where marked)
test: $(STAMP) $(NODE_TOOLS)
	$(BIN)/python -m pytest -q

## make bench: the rules pipeline benchmark (a real `bastion serve` on loopback, < ~4 min), then the side-by-side
## rules overhead benchmark (two servers, paired logins, ~3 min quiet, up to ~7.5 min busy); both write bench/results/
bench: $(STAMP)
	$(BIN)/python bench/rules_pipeline.py
	$(BIN)/python bench/rules_overhead.py

clean:
	rm -rf $(VENV) var .pytest_cache
