# kubeportal: `make run` serves on the embedded default, `make test` runs every test.

CARGO ?= cargo
export TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres

.PHONY: run test check lint openapi bench

run:
	$(CARGO) run --release -p kubeportal-server

## All tests: formatting, lints, the OpenAPI drift check, unit and integration
## tests on SQLite and Postgres (TEST_DATABASE_URL), kubectl end to end.
test: lint
	$(CARGO) test --workspace --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Regenerate the checked-in OpenAPI document from the code.
openapi:
	$(CARGO) run -q -p kubeportal-server -- openapi > openapi/openapi.json

## Benchmarks (not run in CI): print ratios and percentiles.
bench:
	$(CARGO) run --release -p kubeportal-bench
