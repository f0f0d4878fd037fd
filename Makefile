# Shortcuts for the README's and CONTRIBUTING.md's commands.
.PHONY: up test proto check-proto dashboards lint bench

up:
	python3 dev.py up

test:
	python3 dev.py test

proto:
	.venv/bin/python tools/genproto.py

check-proto:
	.venv/bin/python tools/genproto.py --check

dashboards:
	.venv/bin/python tools/make_dashboards.py

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/python tools/typecheck.py

bench:
	.venv/bin/python bench/run.py
