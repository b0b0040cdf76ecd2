"""Is Pendulum-size CQL's critic pass per-op overhead or memory traffic? Times the forward and backward
of K agents' stacked 2-critic ensembles (2x64, ReLU) over CQL's rows (batch 256 x 31 Q-evaluations per
state), eager and under torch.compile (which fuses the bias adds and ReLUs around the matmuls), and
eager in row chunks (each chunk's activations small enough to stay in cache).

    python bench/critic_traffic.py --ks 1 8 --seconds 4
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Callable

import torch
from throughput import calls_per_second
from torch import Tensor

ROWS = 256 * 31  # CQL: batch 256, 1 dataset + 3 x 10 sampled actions per state
DIMS = [3 + 1, 64, 64, 1]  # Pendulum: 3 observations + 1 action, 2x64, one Q
CRITICS = 2

Step = Callable[[Tensor, list[Tensor]], list[Tensor]]


def stacked_weights(k: int) -> list[Tensor]:
    """Weights and biases of k agents x 2 critics, stacked: (k*C, in, out) and (k*C, 1, out)."""
    out = []
    for fan_in, fan_out in zip(DIMS[:-1], DIMS[1:]):
        out.append((torch.randn(k * CRITICS, fan_in, fan_out) / fan_in**0.5).requires_grad_(True))
        out.append(torch.zeros(k * CRITICS, 1, fan_out, requires_grad=True))
    return out


def grads(x: Tensor, ws: list[Tensor]) -> list[Tensor]:
    """Gradients of a CQL-like loss (squared Q plus a logsumexp over rows) for every weight."""
    for i in range(0, len(ws), 2):
        x = torch.bmm(x, ws[i]) + ws[i + 1]  # (k*C, R, in) -> (k*C, R, out)
        if i + 2 < len(ws):
            x = torch.relu(x)
    loss = x.square().mean() + torch.logsumexp(x.squeeze(-1), 1).mean()
    return list(torch.autograd.grad(loss, ws))


def chunked(n: int) -> Step:
    """The same pass in n row chunks, gradients summed (a timing stand-in: each chunk has its own loss)."""

    def step(x: Tensor, ws: list[Tensor]) -> list[Tensor]:
        first, *rest = x.chunk(n, dim=1)  # (k*C, R, in) -> n x (k*C, R/n, in)
        total = grads(first, ws)
        for part in rest:
            total = [a + b for a, b in zip(total, grads(part, ws))]
        return total

    return step


def table(k: int, chunks: list[int], seconds: float) -> None:
    """Rows for one K. Each K runs in a process of its own: compiling a second K in the same process
    (even after a dynamo reset) gave kernels up to twice as slow."""
    variants: dict[str, Step] = {"eager": grads, "compiled": torch.compile(grads, dynamic=False)}
    variants |= {f"eager, {n} chunks": chunked(n) for n in chunks}
    ws, x = stacked_weights(k), torch.randn(k * CRITICS, ROWS, DIMS[0])
    for name, step in variants.items():
        ms = 1000 / calls_per_second(lambda: step(x, ws), seconds)
        print(f"| {k} | {name} | {ms:.2f} | {ms / k:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--chunks", type=int, nargs="+", default=[4])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process for one K
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one is not None:
        table(args.one, args.chunks, args.seconds)
        return
    print("| K | variant | ms per pass | ms per agent |\n|---|---|---|---|", flush=True)
    for k in args.ks:
        common = ["--chunks", *map(str, args.chunks), "--seconds", str(args.seconds), "--threads", str(args.threads)]
        subprocess.run([sys.executable, __file__, "--one", str(k), *common], check=True)


if __name__ == "__main__":
    main()
