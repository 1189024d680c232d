# The two commands of the README. Both create (or reuse) the virtual environment .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test

# Command one: set up, then train -> sample -> evaluate on the built-in synthetic InSAR data.
demo: $(STAMP)
	$(BIN)/python main_job.py

# Command two: set up, then lint and run the test suite.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)
