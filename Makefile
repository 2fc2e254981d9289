# One command runs every check: `make check`.
PY ?= python

.PHONY: check lint type test

check: lint type test

lint:
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench

type:
	$(PY) -m mypy

# The tests that keep to themselves run in parallel (pytest-xdist, JOBS workers). The fault
# trials, the container image and the browser console time real processes and share podman
# and Chromium, and one test (exclusive) stops PostgreSQL: they run after, one at a time.
# Both runs always happen; either one failing fails `make test`. Three workers on two cores:
# the tests wait on servers and subprocesses more than they compute (about 1.1 cores busy with
# three), and a third worker cut tests/worker and tests/handlers from 742 s to 549 s. The
# slowest tests of the parallel run are listed at its end.
JOBS ?= 3
SERIAL = faults or container or browser or exclusive

test:
	$(PY) -m pytest -n $(JOBS) --dist worksteal --durations=25 -m "not ($(SERIAL))"; parallel=$$?; \
	$(PY) -m pytest -m "$(SERIAL)"; serial=$$?; \
	[ $$parallel -eq 0 ] && [ $$serial -eq 0 ]
