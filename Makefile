# isscli: `make demo` runs the pipeline on an embedded default, `make test` runs the tests.
# Both install first into .venv. torch is pinned to the 2.13.0 CPU wheel: a bare `torch`
# requirement can pull a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install test test-quick demo lint specs clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

# pytest exits 5 when it collects no test: that is a failure here, not a pass.
test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider; status=$$?; \
	if [ $$status -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi; exit $$status

# The inner loop: every test but the slow ones (tests/conftest.py SLOW_FILES), in under a minute.
test-quick: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"; status=$$?; \
	if [ $$status -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi; exit $$status

demo: install
	$(BIN)/python -m isscli demo

# ruff on everything, then mypy on the package (settings in pyproject.toml: every function typed, the public API strict).
lint: install
	$(BIN)/ruff check isscli tests benchmarks examples
	$(BIN)/mypy

# Regenerate the shipped specs of the presets from freshly initialised models.
specs: install
	@set -e; tmp=$$(mktemp -d); for preset in small medium large; do \
	  $(BIN)/isscli init --preset $$preset -o $$tmp/$$preset.safetensors >/dev/null; \
	  $(BIN)/isscli groups $$tmp/$$preset.safetensors -o group_specs/ptb-$$preset.json --force >/dev/null; \
	done; rm -rf $$tmp

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
