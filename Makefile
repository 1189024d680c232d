# The two commands of the README. Both create (or reuse) the virtual environment .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test

# Command one: set up, then train -> sample -> evaluate on the built-in synthetic InSAR data.
demo: $(STAMP)
	$(BIN)/python main_job.py

# Command two: set up, then lint and run the test suite. The tests that compare numbers run with amp='auto' resolved
# as on a CPU with native bfloat16 (tests/conftest.py), so they pass on AVX2-only, AVX512-BF16 and AMX machines alike.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m "not numeric"
	PDM_RADAR_ASSUME_BF16=1 $(BIN)/python -m pytest -q -m numeric

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)
