# The README's commands. `make test` works on a fresh machine: it installs the
# Debian packages, the venv, the Kafka jars and InfluxDB, then runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
IOTPIPE := $(BIN)/iotpipe

.PHONY: help setup system venv services up down status lint test test-unit test-integration clean

help:
	@echo "make setup             install Debian packages, the venv and the services (cached)"
	@echo "make up                start Mosquitto, Kafka and InfluxDB and create the topics"
	@echo "make status | down     health of the local stack | stop it"
	@echo "make test              lint + unit + integration tests against the real servers"
	@echo "make lint              ruff and mypy"

setup: system venv services

system:
	@bash deploy/setup-system.sh

venv: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

services: venv system
	$(IOTPIPE) stack install

up: setup
	$(IOTPIPE) stack up

down:
	$(IOTPIPE) stack down

status:
	$(IOTPIPE) stack status

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test-unit: venv
	$(BIN)/pytest tests/unit

test-integration: setup
	$(BIN)/pytest tests/integration

test: setup lint
	$(BIN)/pytest tests/unit tests/integration

clean:
	-$(IOTPIPE) stack down
	rm -rf .iotpipe .pytest_cache .mypy_cache .ruff_cache
