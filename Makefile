# kubeportal: `make run` serves on the embedded default, `make test` runs every test.

CARGO ?= cargo
export TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres

.PHONY: run test test-js test-fuzz check lint openapi bench soak

run:
	$(CARGO) run --release -p kubeportal-server

## All tests: formatting, lints, the OpenAPI drift check, unit and integration
## tests on SQLite and Postgres (TEST_DATABASE_URL), kubectl end to end, the
## JavaScript tests (test-js) and API fuzzing (test-fuzz).
test: lint test-js test-fuzz
	$(CARGO) test --workspace --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Regenerate the checked-in OpenAPI document from the code, and the
## TypeScript SDK's types from it.
openapi:
	$(CARGO) run -q -p kubeportal-server -- openapi > openapi/openapi.json
	cd sdk/typescript && $(NPM_CI) && npm run generate

## Benchmarks (not run in CI): print ratios and percentiles.
bench:
	$(CARGO) run --release -p kubeportal-bench

## Soak (not run in CI): 5 minutes of 2,000 requests/s over 1,000 connections
## with 1,000 watches open; a row every 10 s and a verdict, in bench/SOAK.md.
## A quick check: make soak SOAK_ARGS="--minutes 1".
SOAK_ARGS ?=
soak:
	$(CARGO) run --release -p kubeportal-bench -- soak $(SOAK_ARGS)

## JavaScript: the TypeScript SDK (type check, generated-types drift check,
## tests against a live kubeportal, @kubernetes/client-node through the path
## form) and the web demo (build, headless Chromium end to end; Debian's
## chromium at /usr/bin/chromium, or CHROMIUM_PATH). Needs Node 20+ and npm.
NPM_CI = npm ci --no-audit --no-fund
# The tests start these binaries; built once here, not again by each test run.
test-js: export KUBEPORTAL_TEST_BIN_DIR = $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/debug
test-js:
	$(CARGO) build -p kubeportal-server -p kube-double
	cd sdk/typescript && $(NPM_CI) && npm run typecheck && npm run check:generated && npm test
	cd web-demo && $(NPM_CI) && npm run build && npm run test:e2e

## API fuzzing: schemathesis against a live kubeportal (SQLite, then Postgres
## on TEST_DATABASE_URL) with a cluster on kube-double: every response as the
## OpenAPI document says and never a 5xx with an admin token, only 401 without
## one. Installs the schemathesis pinned in tests/fuzz/requirements.txt into a
## venv under the target directory. FUZZ_MAX_EXAMPLES, FUZZ_SEED and
## FUZZ_STORES tune it; see tests/fuzz/run.py.
test-fuzz: export KUBEPORTAL_TEST_BIN_DIR = $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/debug
test-fuzz:
	$(CARGO) build -p kubeportal-server -p kube-double
	python3 tests/fuzz/run.py
