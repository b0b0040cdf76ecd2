#!/usr/bin/env bash
# The GPU check: rlrun on a CUDA machine with its own Python (3.12, CUDA PyTorch) and no network.
#
#   make gpu-wheels              # here, with network: the wheels that image lacks, into .whl/
#   bash bench/gpu_check.sh OUT  # there, from the repository root with .whl/ beside it
#
# In about 8 minutes it installs the wheels without network, then runs the algorithm contract tests
# on device=cuda; bench/throughput.py on cuda for door-size CQL (fp32, bf16, torch.compile and CUDA
# graphs, d3rlpy side by side) and for parallel seeds at K = 1, 4 and 16, door and Pendulum sizes.
# Everything goes to one file, OUT (default gpu_check.md). Each part has its own time limit, so a
# part that fails or hangs leaves the others' results.
set -u
out=${1:-gpu_check.md}
site=/tmp/rlrun-site
d3rlpy_site=/tmp/rlrun-d3rlpy-site
py=${PYTHON:-python3}
device=${GPU_CHECK_DEVICE:-cuda}  # cpu: a rehearsal of the script on a machine without a GPU

section() { printf '\n## %s\n\n```\n' "$1" >>"$out"; }
end() { printf '```\n' >>"$out"; }

: >"$out"
{
    echo "# rlrun GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo '```'
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
    "$py" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())' 2>&1
    echo '```'
} >>"$out"

section "install (.whl, no network)"
"$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl >>"$out" 2>&1 \
    && echo "rlrun's wheels: ok" >>"$out"
"$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$d3rlpy_site" .whl/d3rlpy/*.whl >>"$out" 2>&1 \
    && echo "d3rlpy's wheels: ok" >>"$out"
end
export PYTHONPATH="$site:$PWD" PYTHONUNBUFFERED=1
export D3RLPY_PYTHON="$(command -v "$py")" D3RLPY_PYTHONPATH="$d3rlpy_site"

section "contract tests on device=$device"
RLRUN_TEST_DEVICE=$device timeout 120 "$py" -m pytest -q -p no:cacheprovider tests/test_algos.py \
    -k "act_shapes or update_returns or save_load or collect_all or bf16" 2>&1 | tail -15 >>"$out"
end

section "throughput on $device: door CQL, every variant, d3rlpy beside"
timeout 210 "$py" bench/throughput.py --devices "$device" --configs door --algos cql --seconds 4 >>"$out" 2>&1
end

section "throughput on $device: parallel seeds (K = 1, 4, 16)"
timeout 120 "$py" bench/throughput.py --devices "$device" --configs door pendulum --algos cql td3_bc --seconds 3 \
    --parallel-seeds 1 4 16 --no-variants >>"$out" 2>&1
end
echo "written: $out"
