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
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -m "not slow" -q -p no:cacheprovider --durations=30

test-all: setup
	$(PY) -m pytest -q -p no:cacheprovider

D3RLPY := bench/.venv-d3rlpy/.installed

# d3rlpy 2.8.1 pins gymnasium 1.0.0, so it lives in its own environment (same torch CPU wheel)
$(D3RLPY):
	python3 -m venv bench/.venv-d3rlpy
	bench/.venv-d3rlpy/bin/pip install -q torch==2.13.0
	bench/.venv-d3rlpy/bin/pip install -q d3rlpy==2.8.1 "torch>=2.5"
	touch $(D3RLPY)

bench: setup $(D3RLPY)
	$(PY) bench/throughput.py

clean:
	rm -rf outputs multirun .pytest_cache
