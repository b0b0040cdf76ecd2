# Every target sets up .venv on first use: torch's CPU wheel first, then everything else in one
# resolver pass (Meta-World pins MuJoCo 3.3.0; a later downgrade would break `import mujoco`).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test test-all bench gpu-wheels clean

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
	$(PY) -m pytest -n auto --dist worksteal -m "not slow" -q -p no:cacheprovider --durations=30

test-all: setup
	$(PY) -m pytest -n auto --dist worksteal -q -p no:cacheprovider

D3RLPY := bench/.venv-d3rlpy/.installed

# d3rlpy 2.8.1 pins gymnasium 1.0.0, so it lives in its own environment (same torch CPU wheel)
$(D3RLPY):
	python3 -m venv bench/.venv-d3rlpy
	bench/.venv-d3rlpy/bin/pip install -q torch==2.13.0
	bench/.venv-d3rlpy/bin/pip install -q d3rlpy==2.8.1 "torch>=2.5"
	touch $(D3RLPY)

bench: setup $(D3RLPY)
	$(PY) bench/throughput.py

# bench/gpu_check.sh runs on a GPU machine with its own Python 3.12 and CUDA PyTorch and no network: these are
# the wheels for what its image lacks (it has numpy, h5py, PyYAML, typer, tensorboard, matplotlib, scikit-learn,
# pytest), fetched here into .whl/; d3rlpy's go to .whl/d3rlpy/, as its gymnasium pin differs from ours.
GPU_PACKAGES := hydra-core==1.3.8 omegaconf==2.3.1 gymnasium==1.4.0 farama-notifications==0.0.6 minari==0.5.4
D3RLPY_PACKAGES := d3rlpy==2.8.1 gymnasium==1.0.0 farama-notifications==0.0.6 dataclasses-json==0.6.7 marshmallow==3.26.2 structlog==26.1.0
PY312 := --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
	--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64

gpu-wheels: setup
	$(PY) -m pip download -q $(PY312) -d .whl $(GPU_PACKAGES)
	$(PY) -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
	$(PY) -m pip download -q $(PY312) -d .whl/d3rlpy $(D3RLPY_PACKAGES)
	$(PY) -m pip wheel -q --no-deps -w .whl/d3rlpy gym==0.26.2 gym-notices==0.1.0
	du -sh .whl

clean:
	rm -rf outputs multirun .pytest_cache
