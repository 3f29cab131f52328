# The two commands a new user needs: `make run` and `make test`.
# Everything else here serves development and CI.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PROTO_SRC := protos/session_authority/v1/session_service.proto
GEN_DIR   := client/session_authority/v1

.PHONY: run test fuzz demo node-test lint format proto proto-check buf-lint bench bench-smoke bench-report bench-scale clean

# Stamps record which extras are installed, refreshed when pyproject.toml changes.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.server-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[server]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,codegen]'
	touch $@ $(VENV)/.server-installed

node_modules/.installed: package.json package-lock.json
	npm ci --silent --no-audit --no-fund
	touch $@

run: $(VENV)/.server-installed
	$(BIN)/session-authority serve

test: $(VENV)/.dev-installed
	$(BIN)/pytest

# The whole flow in one command: the authority (SQLite), an orders service protected
# by SessionInterceptor, and an edge script that logs in, refreshes and revokes.
demo: $(VENV)/.server-installed
	$(BIN)/python examples/demo/run.py

# The Node.js client from the same protos, against a real authority it starts.
node-test: $(VENV)/.server-installed
	cd examples/node && npm ci --silent --no-audit --no-fund && npm test

# The fuzz test, long: 2000 examples per strategy instead of the suite's 40.
fuzz: $(VENV)/.dev-installed
	SESSION_AUTHORITY_FUZZ_EXAMPLES=2000 $(BIN)/pytest tests/test_fuzz.py -p no:cacheprovider

lint: $(VENV)/.dev-installed buf-lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.dev-installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

buf-lint: node_modules/.installed
	npx --no-install buf lint

# Regenerate the committed Python code from the protos (pinned grpcio-tools).
proto: $(VENV)/.dev-installed
	$(BIN)/python -m grpc_tools.protoc -Iprotos \
		--python_out=client --pyi_out=client --grpc_python_out=client $(PROTO_SRC)

# Fails when the committed generated code differs from what the protos give.
proto-check: $(VENV)/.dev-installed
	@tmp=$$(mktemp -d) && \
	$(BIN)/python -m grpc_tools.protoc -Iprotos \
		--python_out=$$tmp --pyi_out=$$tmp --grpc_python_out=$$tmp $(PROTO_SRC) && \
	for f in $$tmp/session_authority/v1/*; do \
		diff -u $(GEN_DIR)/$$(basename $$f) $$f || { echo "generated code is stale: run 'make proto'"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp; echo "generated code is up to date"

# Benchmarks (issue 6): the full run and its table with every target's PASS/FAIL
# (PostgreSQL when SESSION_AUTHORITY_TEST_POSTGRES_DSN is set), docs/benchmarks.md
# from its results, and every benchmark briefly for CI (no thresholds).
bench: $(VENV)/.dev-installed
	@[ $(VENV)/.bench-installed -nt pyproject.toml ] || \
		{ $(BIN)/pip install --quiet -e '.[dev,bench]' && touch $(VENV)/.bench-installed; }
	$(BIN)/python -m bench

bench-smoke: $(VENV)/.dev-installed
	@[ $(VENV)/.bench-installed -nt pyproject.toml ] || \
		{ $(BIN)/pip install --quiet -e '.[dev,bench]' && touch $(VENV)/.bench-installed; }
	$(BIN)/python -m bench --smoke

bench-report: $(VENV)/.dev-installed
	@[ $(VENV)/.bench-installed -nt pyproject.toml ] || \
		{ $(BIN)/pip install --quiet -e '.[dev,bench]' && touch $(VENV)/.bench-installed; }
	$(BIN)/python -m bench.report

# Index-backed at scale: 10k vs 1M sessions (PostgreSQL when its DSN is set).
bench-scale: $(VENV)/.dev-installed
	$(BIN)/python -m bench.scale --backend sqlite
	if [ -n "$$SESSION_AUTHORITY_TEST_POSTGRES_DSN" ]; then $(BIN)/python -m bench.scale --backend postgresql; fi

clean:
	rm -rf $(VENV) node_modules data .pytest_cache .mypy_cache .ruff_cache
