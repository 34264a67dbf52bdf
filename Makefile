# The two commands a new user needs: `make run` and `make test`.
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
PY := .venv/bin/python

.PHONY: install run test test-unit test-integration test-e2e test-ops test-faults lint broker tools \
	asyncapi clean bench bench-match bench-relay bench-pipeline

install: .venv/.synced

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

.venv/.synced: pyproject.toml uv.lock | $(if $(findstring .tools,$(UV)),.tools/bin/uv)
	$(UV) sync --frozen
	@touch $@

# System tools the tests use, from Debian's packages (docker-compose parses the compose file;
# prometheus brings promtool and the server the monitoring tests run).
tools:
	@command -v docker-compose >/dev/null || { command -v apt-get >/dev/null && \
		(apt-get install -y -qq docker-compose >/dev/null 2>&1 || \
		 (apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null)); } || \
		echo "warning: docker-compose not installed; its test will be skipped"
	@command -v promtool >/dev/null || { command -v apt-get >/dev/null && \
		(apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 || \
		 (apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null)); } || \
		echo "warning: prometheus not installed; the monitoring tests will be skipped"

# Regenerate docs/asyncapi/<service>.json from the services' brokers (a test checks they match).
asyncapi: install
	$(PY) docs/asyncapi/generate.py

broker:
	@$(PY) -m shared.broker_check || (echo "starting RabbitMQ" && rabbitmq-server -detached && $(PY) -m shared.broker_check --wait 120)

run: install broker
	$(PY) -m shared.devstack

lint: install
	$(PY) -m ruff check .
	$(PY) -m mypy .

test: install tools broker lint
	$(PY) -m pytest -p no:cacheprovider

test-unit: install
	$(PY) -m pytest tests/unit

test-integration: install broker
	$(PY) -m pytest tests/integration

test-e2e: install broker
	$(PY) -m pytest tests/e2e

test-ops: install tools broker
	$(PY) -m pytest tests/ops

# Benchmarks (not timed tests): each writes its numbers under bench/results/. `make bench` runs
# them all (~10 minutes) and writes bench/results/latest.json and latency.png.
bench: bench-match broker
	$(PY) -m bench

bench-match: install
	$(PY) -m bench.match

bench-relay: install broker
	$(PY) -m bench.relay

bench-pipeline: install broker
	$(PY) -m bench.pipeline

# Every fault scenario with 1,000 reports each (`make test` runs them with 150).
test-faults: install broker
	FAULT_REPORTS=1000 $(PY) -m pytest -p no:cacheprovider tests/faults

clean:
	rm -rf var .venv .tools .mypy_cache .ruff_cache .pytest_cache
