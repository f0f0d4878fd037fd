# Shortcuts for the README's and CONTRIBUTING.md's commands.
.PHONY: up test quick check lint typecheck proto check-proto dashboards traces bench

up:
	python3 dev.py up

test:                  # the whole suite, as CI runs it
	python3 dev.py test

quick:                 # the unit tests, under a minute
	python3 dev.py test -m "not slow"

check: lint check-proto quick

lint: typecheck
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

typecheck:             # mypy --strict over every module under its installed name
	.venv/bin/python tools/typecheck.py

proto:
	.venv/bin/python tools/genproto.py

check-proto:
	.venv/bin/python tools/genproto.py --check

dashboards:
	.venv/bin/python tools/make_dashboards.py

traces:
	.venv/bin/python tools/make_traces.py

bench:
	.venv/bin/python bench/run.py
