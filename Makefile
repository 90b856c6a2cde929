# The README's two commands: `make demo` (main job on the embedded synthetic default) and `make test`.
PYTHON ?= python3

.PHONY: setup demo test test-slow test-faults lint hooks
setup:
	bash scripts/setup.sh

demo: setup
	$(PYTHON) -m hiclr.cli demo --out demo_out

test: setup
	$(PYTHON) -m pytest

test-slow: setup
	$(PYTHON) -m pytest -m slow

test-faults: setup
	$(PYTHON) -m pytest tests/faults -m "slow or not slow"

lint: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

hooks:
	git config core.hooksPath scripts/hooks
