# Set-up and tests. `make setup` once, then `make test`.
PYTHON ?= python3
VENV ?= .venv

.PHONY: setup test test-fast bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	./scripts/setup.sh
	touch $@

test: setup
	$(VENV)/bin/python -m pytest

# Everything but the slow training tests.
test-fast: setup
	$(VENV)/bin/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) runs/catalog.sqlite* runs/checkpoints runs/sandbox
