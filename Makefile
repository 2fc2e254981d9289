# One command runs every check: `make check`.
PY ?= python

.PHONY: check lint type test

check: lint type test

lint:
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench

type:
	$(PY) -m mypy

test:
	$(PY) -m pytest
