# One command runs every check: `make check`.
PY ?= python

.PHONY: check lint type test

check: lint type test

lint:
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench

type:
	$(PY) -m mypy

# Two workers: the suite is mostly waiting on servers (moto, PostgreSQL, subprocesses).
test:
	$(PY) -m pytest -n 2
