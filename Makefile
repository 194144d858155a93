# The short verbs. CI calls the same ones (.ci/run → make test).
CARGO ?= cargo

.PHONY: build run test lint bench services fmt

build:
	$(CARGO) build --workspace --bins

# Embedded mode: every service in one process on SQLite, no server needed.
run:
	$(CARGO) run -p switchyard-cli --bin switchyard -- dev

# Binaries first: the end-to-end tests run them as an operator would.
test:
	$(CARGO) build --workspace --bins
	$(CARGO) nextest run --workspace --profile $${NEXTEST_PROFILE:-default}

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Starts PostgreSQL and Redis on this machine when they are not running (see .ci/services).
services:
	bash .ci/services

# Release build; talks to this machine's PostgreSQL and Redis (make services).
bench:
	$(CARGO) run --release -p switchyard-bench
