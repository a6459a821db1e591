# The two commands: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Auth0's own command-line tools that the end-to-end tests drive (tests/tools/package-lock.json)
NODE_TOOLS := tests/tools/node_modules/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install test-sqlite test-postgres bench bench-quick bench-rules wrk clean

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

## make bench: the benchmark suite (bench/suite.py): `bastion serve` with 1 and 2 workers on SQLite and PostgreSQL,
## the peer side by side (../shared/bench/run-peer.sh), wrk and a separate login driver; bounded (< 10 min);
## writes bench/results/<UTC date>.md and .json. `make bench-quick`: a smoke run (< 2 min, <date>-quick.*)
bench: $(STAMP) wrk
	$(BIN)/python bench/suite.py

bench-quick: $(STAMP) wrk
	$(BIN)/python bench/suite.py --quick

# the load generator, from Debian's packages (run-peer.sh would install it the same way)
wrk:
	@command -v wrk >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk)

## make bench-rules: the two rules benchmarks: the rules pipeline (one server, < ~4 min), then the side-by-side
## rules overhead (two servers, paired logins, ~3 min quiet, up to ~7.5 min busy); both write bench/results/
bench-rules: $(STAMP)
	$(BIN)/python bench/rules_pipeline.py
	$(BIN)/python bench/rules_overhead.py

clean:
	rm -rf $(VENV) var .pytest_cache
