# Every target sets up .venv on first use: torch's CPU wheel first, then everything else in one
# resolver pass (Meta-World pins MuJoCo 3.3.0; a later downgrade would break `import mujoco`).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test test-all bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(VENV)/bin/rlrun

test: setup
	$(PY) -m pytest -m "not slow" -q -p no:cacheprovider

test-all: setup
	$(PY) -m pytest -q -p no:cacheprovider

bench: setup
	$(PY) bench/throughput.py

clean:
	rm -rf outputs multirun .pytest_cache
