PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test install venv clean demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs the package with its test extra, PyTorch pinned to the CPU wheel.
install: $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"

test: install
	$(BIN)/python -m pytest

# A plain install (no test extra) and the demo: a bundled sample translated with a bundled preset, offline.
demo: $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e .
	$(BIN)/cyclegan demo

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
