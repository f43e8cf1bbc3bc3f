# The README's commands. `make test` works on a fresh machine: it installs the
# Debian packages, the venv, the Kafka jars and InfluxDB, then runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
IOTPIPE := $(BIN)/iotpipe

.PHONY: help setup system venv services up demo down status lint test test-unit test-integration clean

help:
	@echo "make setup             install Debian packages, the venv and the services (cached)"
	@echo "make up                start Mosquitto, Kafka and InfluxDB and create the topics"
	@echo "make demo              the whole pipeline, supervised, with a loss-checked summary"
	@echo "                       (DEVICES=, RATE=, DURATION= seconds, ANOMALY_RATE=)"
	@echo "make status | down     health of the local stack | stop it"
	@echo "make test              lint + unit + integration tests against the real servers"
	@echo "make lint              ruff, mypy, and cargo fmt + clippy + unit tests for flows/native"
	@echo "make bench | bench-quick  benchmark suite (full | under 3 min) into bench/results"

setup: system venv services

system:
	@bash deploy/setup-system.sh

venv: $(BIN)/.installed

# The flow's compiled part (flows/native, Rust) is built by the editable install.
NATIVE := flows/native/Cargo.toml flows/native/Cargo.lock $(wildcard flows/native/src/*.rs)
$(BIN)/.installed: pyproject.toml $(NATIVE)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

services: venv system
	$(IOTPIPE) stack install

up: setup
	$(IOTPIPE) stack up

# make demo [DEVICES=10000] [RATE=3000] [DURATION=60] [ANOMALY_RATE=0.0005] [DEMO_ARGS=--json]
# Unset values come from IOTPIPE_DEMO_* (see `iotpipe demo --help`); DURATION=0 runs until Ctrl-C.
DEMO_OPTS = $(if $(DEVICES),--devices $(DEVICES)) $(if $(RATE),--rate $(RATE)) \
	$(if $(DURATION),--duration $(DURATION)) $(if $(ANOMALY_RATE),--anomaly-rate $(ANOMALY_RATE))
demo: up
	$(IOTPIPE) demo $(DEMO_OPTS) $(DEMO_ARGS)

down:
	$(IOTPIPE) stack down

status:
	$(IOTPIPE) stack status

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	cargo fmt --manifest-path flows/native/Cargo.toml --check
	cargo clippy --manifest-path flows/native/Cargo.toml --release --locked --quiet -- -D warnings
	cargo test --manifest-path flows/native/Cargo.toml --release --locked --lib --quiet

test-unit: venv
	$(BIN)/pytest tests/unit

test-integration: setup
	$(BIN)/pytest tests/integration

test: setup lint
	$(BIN)/pytest tests/unit tests/integration

clean:
	-$(IOTPIPE) stack down
	rm -rf .iotpipe .pytest_cache .mypy_cache .ruff_cache

.PHONY: bench bench-quick
bench: venv
	$(IOTPIPE) bench --full

bench-quick: venv
	$(IOTPIPE) bench --quick
