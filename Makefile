# Set-up and tests. `make setup` once, then `make test`.
PYTHON ?= python3
VENV ?= .venv

.PHONY: setup test test-fast bench clean

VLLM_VENV := .venv-vllm
SMOLLM2 := runs/models/smollm2

setup: $(VENV)/.installed $(VLLM_VENV)/.installed $(SMOLLM2)/.converted.json

$(VENV)/.installed: pyproject.toml
	./scripts/setup.sh
	touch $@

# vLLM's CPU build in a venv of its own (it pins another torch), and SmolLM2 converted from the
# GGUF into the safetensors folder vLLM loads: the vllm and openai backend tests run on both.
$(VLLM_VENV)/.installed: scripts/setup_vllm.sh pyproject.toml
	./scripts/setup_vllm.sh
	touch $@

$(SMOLLM2)/.converted.json: scripts/convert_smollm2.py $(VENV)/.installed
	$(VENV)/bin/python scripts/convert_smollm2.py
	touch $@

test: setup
	$(VENV)/bin/python -m pytest

# Everything but the slow training tests.
test-fast: setup
	$(VENV)/bin/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) runs/catalog.sqlite* runs/checkpoints runs/sandbox
