# The two commands a new user needs: `make run` and `make test`.
# Everything else here serves development and CI.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PROTO_SRC := protos/session_authority/v1/session_service.proto
GEN_DIR   := client/session_authority/v1
NODE_DIR  := examples/node
NODE_GEN  := $(NODE_DIR)/gen

# The long targets' sizes; .ci/run runs each in miniature through these, e.g.
# `make fuzz FUZZ_EXAMPLES=5`, `make bench-scale SCALE_ROWS=1000,10000`.
FUZZ_EXAMPLES    ?= 2000
SCALE_ROWS       ?= 10000,1000000
BENCH_ARGS       ?=
BENCH_RESULTS    ?= bench/results/latest.json
BENCH_REPORT_DIR ?= docs

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

$(VENV)/.bench-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@ $(VENV)/.dev-installed $(VENV)/.server-installed

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

# The Node.js client (Connect-ES, code from protoc-gen-es in examples/node/gen)
# against a real authority it starts: every RPC over gRPC, Connect and gRPC-Web.
node-test: $(VENV)/.server-installed $(NODE_DIR)/node_modules/.installed
	cd $(NODE_DIR) && npm test

# examples/node's locked packages, protoc-gen-es among them (`make proto` runs it).
$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --silent --no-audit --no-fund
	touch $@

# The fuzz test, long: FUZZ_EXAMPLES (2000) examples per strategy instead of the suite's 40.
fuzz: $(VENV)/.dev-installed
	SESSION_AUTHORITY_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest tests/test_fuzz.py -p no:cacheprovider

lint: $(VENV)/.dev-installed buf-lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.dev-installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# buf: lint (STANDARD), format, and no breaking change against the main branch.
buf-lint: node_modules/.installed
	npx --no-install buf lint
	npx --no-install buf format --diff --exit-code
	npx --no-install buf breaking --against '.git#branch=main'

# The Node.js code: plain ESM JavaScript with .d.ts beside it, from examples/node's
# locked @bufbuild/protoc-gen-es run by the same pinned protoc, into $(1). Our proto
# and google/rpc/error_details.proto (ErrorInfo, BadRequest; from the
# googleapis-common-protos package in .venv); the google/protobuf types are
# @bufbuild/protobuf's own (@bufbuild/protobuf/wkt), not generated.
GOOGLEAPIS_INCLUDE = $$($(BIN)/python -c 'import google.rpc, pathlib; print(pathlib.Path(next(iter(google.rpc.__path__))).parents[1])')
define protoc_es
	$(BIN)/python -m grpc_tools.protoc -Iprotos -I"$(GOOGLEAPIS_INCLUDE)" \
		--plugin=protoc-gen-es=$(NODE_DIR)/node_modules/.bin/protoc-gen-es \
		--es_out=$(1) --es_opt=target=js+dts,import_extension=js \
		$(PROTO_SRC) google/rpc/error_details.proto
endef

# Regenerate the committed code from the protos: Python (pinned grpcio-tools) and
# examples/node/gen (locked protoc-gen-es).
proto: $(VENV)/.dev-installed $(NODE_DIR)/node_modules/.installed
	$(BIN)/python -m grpc_tools.protoc -Iprotos \
		--python_out=client --pyi_out=client --grpc_python_out=client $(PROTO_SRC)
	rm -rf $(NODE_GEN) && mkdir -p $(NODE_GEN)
	$(call protoc_es,$(NODE_GEN))

# Fails when the committed generated code differs from what the protos give.
proto-check: $(VENV)/.dev-installed $(NODE_DIR)/node_modules/.installed
	@tmp=$$(mktemp -d) && \
	$(BIN)/python -m grpc_tools.protoc -Iprotos \
		--python_out=$$tmp --pyi_out=$$tmp --grpc_python_out=$$tmp $(PROTO_SRC) && \
	for f in $$tmp/session_authority/v1/*; do \
		diff -u $(GEN_DIR)/$$(basename $$f) $$f || { echo "generated code is stale: run 'make proto'"; rm -rf $$tmp; exit 1; }; \
	done && \
	mkdir $$tmp/es && $(call protoc_es,$$tmp/es) && \
	{ diff -ru $(NODE_GEN) $$tmp/es || { echo "examples/node/gen is stale: run 'make proto'"; rm -rf $$tmp; exit 1; }; } && \
	rm -rf $$tmp && echo "generated code is up to date"

# Benchmarks (issue 6): the full run and its table with every target's PASS/FAIL
# (PostgreSQL when SESSION_AUTHORITY_TEST_POSTGRES_DSN is set), docs/benchmarks.md
# from its results, and every benchmark briefly for CI (no thresholds).
# BENCH_ARGS: options of `python -m bench` (e.g. --phases floors --output FILE);
# bench-report renders BENCH_RESULTS into BENCH_REPORT_DIR/benchmarks.{md,png}.
bench: $(VENV)/.bench-installed
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-smoke: $(VENV)/.bench-installed
	$(BIN)/python -m bench --smoke

bench-report: $(VENV)/.bench-installed
	$(BIN)/python -m bench.report $(BENCH_RESULTS) --output-dir $(BENCH_REPORT_DIR)

# Index-backed at scale: SCALE_ROWS sessions, 10k vs 1M by default (PostgreSQL too
# when its DSN is set).
bench-scale: $(VENV)/.dev-installed
	$(BIN)/python -m bench.scale --backend sqlite --rows $(SCALE_ROWS)
	if [ -n "$$SESSION_AUTHORITY_TEST_POSTGRES_DSN" ]; then \
		$(BIN)/python -m bench.scale --backend postgresql --rows $(SCALE_ROWS); fi

clean:
	rm -rf $(VENV) node_modules data .pytest_cache .mypy_cache .ruff_cache
