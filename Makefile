# The two commands a new user needs: `make run` and `make test`.
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
PY := .venv/bin/python

.PHONY: install run test test-unit test-integration test-e2e lint broker clean

install: .venv/.synced

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

.venv/.synced: pyproject.toml uv.lock | $(if $(findstring .tools,$(UV)),.tools/bin/uv)
	$(UV) sync --frozen
	@touch $@

broker:
	@$(PY) -m shared.broker_check || (echo "starting RabbitMQ" && rabbitmq-server -detached && $(PY) -m shared.broker_check --wait 120)

run: install broker
	$(PY) -m shared.devstack

lint: install
	$(PY) -m ruff check .
	$(PY) -m mypy .

test: install broker lint
	$(PY) -m pytest -p no:cacheprovider

test-unit: install
	$(PY) -m pytest tests/unit

test-integration: install broker
	$(PY) -m pytest tests/integration

test-e2e: install broker
	$(PY) -m pytest tests/e2e

clean:
	rm -rf var .venv .tools .mypy_cache .ruff_cache .pytest_cache
