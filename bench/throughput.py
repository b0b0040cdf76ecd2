"""Update throughput of rlrun's offline algorithms and SAC, with d3rlpy 2.8.1's same algorithm side
by side in the same run.

    python bench/throughput.py [--seconds 20] [--configs door pendulum] [--devices cpu cuda]
                               [--algos cql sac bc td3_bc iql awac rebrac]
                               [--parallel-seeds 2 4 8] [--no-variants] [--no-bf16]

Sizes: door = 39 obs, 28 actions, 3x256 actor and critics, batch 256, 10 sampled actions;
pendulum = 3 obs, 1 action, 2x64 (the cql_pendulum preset), batch 256, 10 sampled actions.
Variants: fp32, bf16 autocast (device.amp), torch.compile (device.compile), and on cuda also
CUDA graphs (`--no-bf16` leaves out the bf16 ones: on a CPU without native bf16 they are emulated and
slow). d3rlpy runs from bench/.venv-d3rlpy (`make bench` creates it; its gymnasium pin
conflicts with ours), once as it comes and once with rlrun's allocator setting
(device.keep_freed_memory, passed as GLIBC_TUNABLES). FLOP utilization = analytic matmul FLOPs per update × updates/s ÷ the
measured matmul peak of the device in that precision (on CPU fp32, the faster of torch's BLAS and oneDNN).
`--cpu-matmul` picks rlrun's CPU fp32 critic matmuls as `device.cpu_matmul` does (default auto); when
oneDNN is chosen, a "fp32 blas" row times rlrun on torch's BLAS in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from rlrun import onednn, presets
from rlrun.accel import MMAP_THRESHOLD, TRIM_THRESHOLD, accelerate, keep_freed_memory
from rlrun.algos.base import Batch
from rlrun.build import make_algo, make_members
from rlrun.data.online import Spaces
from rlrun.resolvers import register_resolvers
from rlrun.schema import register_configs

HERE = Path(__file__).resolve().parent
# d3rlpy's Python: `make bench`'s venv, or D3RLPY_PYTHON (bench/gpu_check.sh: the GPU image's, with d3rlpy's wheels on PYTHONPATH)
D3RLPY_PY = os.environ.get("D3RLPY_PYTHON", str(HERE / ".venv-d3rlpy" / "bin" / "python"))
CONFIGS = {"door": (39, 28, [256, 256, 256]), "pendulum": (3, 1, [64, 64])}
BATCH, N_ACTIONS = 256, 10
# rlrun's device.keep_freed_memory, given to d3rlpy's process through glibc's environment tunables
GLIBC_KEEP_MEMORY = f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD}:glibc.malloc.trim_threshold={TRIM_THRESHOLD}"


def linear_flops(rows: int, dims: list[int]) -> int:
    return sum(2 * rows * i * o for i, o in zip(dims[:-1], dims[1:]))


def update_flops(algo: str, obs: int, act: int, hidden: list[int], n_critics: int = 2) -> float:
    """Matmul FLOPs of one CQL or SAC update (backward = 2x forward) as rlrun computes it; nan for the others."""
    if algo not in ("cql", "sac"):
        return float("nan")

    def critic(rows: int, states: int) -> int:  # first layer: W_s s once per state, W_a a per action
        return n_critics * (2 * states * obs * hidden[0] + 2 * rows * act * hidden[0] + linear_flops(rows, [*hidden, 1]))

    actor = lambda rows: linear_flops(rows, [obs, *hidden, 2 * act])  # noqa: E731
    B, N = BATCH, N_ACTIONS
    total = actor(B) + critic(B, B)  # target: pi(s') and target critics
    total += 3 * actor(B) + 3 * critic(B, B)  # actor loss through the critics
    if algo == "cql":  # N samples of pi(s) and pi(s') from one actor pass; one critic pass for 1 + 3N actions
        total += actor(2 * B) + 3 * critic(B * (1 + 3 * N), B)
    else:
        total += 3 * critic(B, B)
    return float(total)


def calls_per_second(fn: Callable[[], Any], seconds: float, warmup: int = 3, device: torch.device = torch.device("cpu")) -> float:
    """How many times a second fn() runs on `device`, timed for `seconds` after `warmup` calls (CUDA: synchronized)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        count += 1
    sync()
    return count / (time.perf_counter() - start)


def flop_rate(fn, flops: float, device: torch.device, seconds: float = 3.0) -> float:
    return flops * calls_per_second(fn, seconds, device=device)


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    a = torch.randn(2048, 2048, device=device, dtype=dtype)
    b = torch.randn(2048, 2048, device=device, dtype=dtype)
    peak = flop_rate(lambda: a @ b, 2 * 2048**3, device)
    if device.type == "cpu" and dtype == torch.float32 and onednn.available():
        x, w = torch.randn(4096, 256), torch.randn(256, 256)  # oneDNN on the critics' own shape
        peak = max(peak, flop_rate(lambda: onednn.mm_t(x, w), 2 * 4096 * 256 * 256, device))
    return peak


def bench_config(algo: str, cfg: str) -> Any:
    """The algorithm's schema defaults at the config's sizes (CQL: 10 sampled actions, no entropy backup, door's rates)."""
    hidden = CONFIGS[cfg][2]
    extra = [f"algo.n_actions={N_ACTIONS}", "algo.backup_entropy=false", "algo.actor_lr=1e-4"] if algo == "cql" else []
    return presets.compose(
        [
            f"algo={algo}",
            "env=pendulum",
            f"network.hidden_sizes=[{','.join(map(str, hidden))}]",
            f"trainer.batch_size={BATCH}",
            "trainer.total_steps=1000000",
            *extra,
        ]
    )


def fixed_batch(obs: int, act: int, device: torch.device) -> Batch:
    return Batch(
        torch.randn(BATCH, obs, device=device),
        torch.rand(BATCH, act, device=device) * 2 - 1,
        torch.randn(BATCH, device=device),
        torch.randn(BATCH, obs, device=device),
        torch.zeros(BATCH, device=device),
        next_act=torch.rand(BATCH, act, device=device) * 2 - 1,
    )


def rlrun_rate(
    algo: str, cfg: str, device: torch.device, amp: bool, compile: bool, graphs: bool, seconds: float, use_onednn: bool = False
) -> float:
    onednn.use("onednn" if use_onednn else "blas")
    if compile or graphs:
        torch._dynamo.reset()  # each variant builds new modules and optimizers: compile afresh, not against old guards
    obs, act, hidden = CONFIGS[cfg]
    torch.manual_seed(0)
    model = make_algo(bench_config(algo, cfg), Spaces(obs_dim=obs, act_dim=act, discrete=False), device)
    update = accelerate(model.update, device, amp, compile, graphs)
    batch = fixed_batch(obs, act, device)
    return calls_per_second(lambda: update(batch), seconds, warmup=5 if not (compile or graphs) else 20, device=device)


def d3rlpy_rate(algo: str, cfg: str, device: torch.device, seconds: float, keep_memory: bool) -> float | None:
    if not Path(D3RLPY_PY).exists():
        return None
    obs, act, hidden = CONFIGS[cfg]
    cmd = [
        str(D3RLPY_PY),
        str(HERE / "d3rlpy_worker.py"),
        "--algo",
        algo,
        "--obs-dim",
        str(obs),
        "--act-dim",
        str(act),
        "--hidden",
        *map(str, hidden),
        "--n-actions",
        str(N_ACTIONS),
        "--batch",
        str(BATCH),
        "--seconds",
        str(seconds),
        "--device",
        "cuda:0" if device.type == "cuda" else "cpu:0",
    ]
    env = dict(os.environ, GLIBC_TUNABLES=GLIBC_KEEP_MEMORY) if keep_memory else dict(os.environ)
    if "D3RLPY_PYTHONPATH" in env:
        env["PYTHONPATH"] = env["D3RLPY_PYTHONPATH"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        print(out.stderr[-1500:], file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])["updates_per_s"]


def parallel_rate(algo: str, cfg: str, device: torch.device, k: int, seconds: float) -> float:
    """Aggregate updates/s of `k` parallel seeds (trainer.parallel_seeds, fp32) on one fixed batch per member."""
    onednn.use("blas")
    obs, act, hidden = CONFIGS[cfg]
    members = make_members(bench_config(algo, cfg), Spaces(obs_dim=obs, act_dim=act, discrete=False), device, seed=0, k=k)
    one = fixed_batch(obs, act, device)
    batch = Batch(*(None if f is None else torch.stack([f] * k) for f in one))  # (B, ...) -> (K, B, ...)
    return k * calls_per_second(lambda: members.update(batch), seconds, warmup=5, device=device)


def parallel_table(configs: list[str], algos: list[str], device: torch.device, ks: list[int], seconds: float) -> None:
    """Aggregate updates/s of K parallel seeds, and its ratio to one seed's plain update in the same run
    (on CPU the faster of its BLAS and oneDNN critic matmuls, as device.cpu_matmul=auto would pick)."""
    print("| config | algo | one seed, updates/s | K | aggregate updates/s | ratio to one seed |")
    print("|---|---|---|---|---|---|")
    both = device.type == "cpu" and onednn.available()
    for cfg in configs:
        for algo in algos:
            single = max(
                rlrun_rate(algo, cfg, device, False, False, False, seconds, on) for on in ([False, True] if both else [False])
            )
            for k in ks:
                rate = parallel_rate(algo, cfg, device, k, seconds)
                print(f"| {cfg} | {algo} | {single:.1f} | {k} | {rate:.1f} | {rate / single:.2f}x |", flush=True)


def main() -> None:
    register_resolvers()
    register_configs()
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS))
    p.add_argument("--algos", nargs="+", default=["cql", "sac", "bc", "td3_bc", "iql", "awac", "rebrac"])
    p.add_argument("--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    p.add_argument(
        "--cpu-matmul", choices=onednn.CHOICES, default="auto", help="rlrun's CPU fp32 critic matmuls (device.cpu_matmul)"
    )
    p.add_argument(
        "--glibc-default", action="store_true", help="leave glibc's allocator as it is (rlrun's device.keep_freed_memory=false)"
    )
    p.add_argument(
        "--parallel-seeds",
        nargs="*",
        type=int,
        default=[],
        help="also time trainer.parallel_seeds at these K (aggregate updates/s against one seed's, fp32)",
    )
    p.add_argument("--no-variants", action="store_true", help="only the parallel-seeds table")
    p.add_argument("--no-bf16", action="store_true", help="skip the bf16 variants (emulated on CPUs without bf16)")
    args = p.parse_args()
    if not args.glibc_default:
        keep_freed_memory()  # what `rlrun` does by default
    cpu_onednn = onednn.use(args.cpu_matmul)
    print(
        f"# {time.strftime('%Y-%m-%d')} · {platform.processor() or platform.machine()} · torch {torch.__version__} · "
        f"{torch.get_num_threads()} threads · CPU fp32 critic matmuls: {'oneDNN' if cpu_onednn else 'BLAS'}"
    )
    for dev_name in args.devices:
        device = torch.device(dev_name)
        if args.parallel_seeds:
            print(f"\n## {dev_name}: parallel seeds")
            parallel_table(args.configs, args.algos, device, args.parallel_seeds, args.seconds)
        if args.no_variants:
            continue
        peaks = {"fp32": matmul_peak(device, torch.float32), "bf16": matmul_peak(device, torch.bfloat16)}
        print(f"\n## {dev_name}: matmul peak fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")
        print(
            "| config | algo | variant | rlrun updates/s | d3rlpy updates/s | ratio | FLOP utilization | "
            "d3rlpy with rlrun's malloc setting | ratio to that |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for cfg in args.configs:
            for algo in args.algos:
                base = d3rlpy_rate(algo, cfg, device, args.seconds, keep_memory=False)
                tuned = d3rlpy_rate(algo, cfg, device, args.seconds, keep_memory=True)
                on = cpu_onednn and device.type == "cpu"
                variants = [("fp32", False, False, False, on)] + ([("fp32 blas", False, False, False, False)] if on else [])
                variants += [("bf16", True, False, False, on)]
                if not args.no_compile:
                    variants += [("fp32+compile", False, True, False, on), ("bf16+compile", True, True, False, on)]
                if device.type == "cuda":
                    variants += [("fp32+graphs", False, True, True, False), ("bf16+graphs", True, True, True, False)]
                variants = [v for v in variants if not (args.no_bf16 and v[1])]
                for name, amp, comp, graphs, use_onednn in variants:
                    rate = rlrun_rate(algo, cfg, device, amp, comp, graphs, args.seconds, use_onednn)
                    util = update_flops(algo, *CONFIGS[cfg]) * rate / peaks["bf16" if amp else "fp32"]
                    util_text = "–" if util != util else f"{100 * util:.0f}%"
                    ratio = f"{rate / base:.2f}x" if base else "n/a"
                    d3 = f"{base:.1f}" if base else "not installed"
                    tuned_cols = f"{tuned:.1f} | {rate / tuned:.2f}x" if tuned else "n/a | n/a"
                    print(f"| {cfg} | {algo} | {name} | {rate:.1f} | {d3} | {ratio} | {util_text} | {tuned_cols} |", flush=True)


if __name__ == "__main__":
    main()
