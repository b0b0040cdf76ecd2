"""`rlrun-export`: a saved run's deterministic policy as one self-contained file.

    rlrun-export outputs/cql/door_demos/<run> --format torchscript   # -> <run>/export/policy_<step>.pt
    rlrun-export outputs/cql/door_demos/<run> --format onnx          # -> <run>/export/policy_<step>.onnx

The file maps a batch of raw observations (B, O) to actions (B, A) in the env's units:
observation normalization and action scaling are inside. Load it with `torch.jit.load(path)` or
`onnxruntime.InferenceSession(path)` (input "obs", output "action"); it needs no rlrun.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rlrun.errors import UserError

FORMATS = ("torchscript", "onnx")


class ExportedPolicy(nn.Module):
    """algo.act(obs, deterministic) followed by the scaling from [-1, 1] to [low, high]."""

    def __init__(self, algo: Any, low: Tensor, high: Tensor) -> None:
        super().__init__()
        self.parts = nn.ModuleList(m for m in vars(algo).values() if isinstance(m, nn.Module))  # its parameters
        self.algo = algo
        self.register_buffer("low", low)
        self.register_buffer("high", high)

    def forward(self, obs: Tensor) -> Tensor:
        action, _ = self.algo.act(obs, None, True)
        return self.low + (action + 1.0) * 0.5 * (self.high - self.low)


def exported_policy(run_dir: Path, step: int | None) -> tuple[ExportedPolicy, int, int]:
    """The run's policy as a module on the CPU, its checkpoint step and its observation size."""
    import gymnasium as gym

    from rlrun.data.online import raw_env
    from rlrun.rollout import load_run

    saved = load_run(run_dir, step, "cpu")
    if saved.algo.initial_state() is not None:
        raise UserError(
            f"{type(saved.algo).__name__} keeps a running option between steps, which an exported "
            f"file cannot hold; use rlrun.load_policy from Python instead."
        )
    env = saved.make_env(0)
    space, obs_dim = raw_env(env).action_space, env.observation_space.shape[0]
    env.close()
    if not isinstance(space, gym.spaces.Box):
        raise UserError("export writes policies of Box action spaces; use rlrun.load_policy for discrete actions.")
    low, high = (torch.as_tensor(x, dtype=torch.float32) for x in (space.low, space.high))
    return ExportedPolicy(saved.algo, low, high).eval().requires_grad_(False), saved.step, obs_dim


def export(run_dir: Path, fmt: str, step: int | None = None, out: Path | None = None) -> Path:
    """Write the policy file; returns its path."""
    module, step, obs_dim = exported_policy(run_dir, step)
    example = torch.zeros(2, obs_dim)
    path = out or run_dir / "export" / f"policy_{step}.{'pt' if fmt == 'torchscript' else 'onnx'}"
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        if fmt == "torchscript":
            torch.jit.trace(module, example).save(str(path))
        else:  # the TorchScript-based exporter: the torch.export-based one needs onnxscript
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*legacy TorchScript-based", category=DeprecationWarning)
                torch.onnx.export(
                    module,
                    (example,),
                    str(path),
                    input_names=["obs"],
                    output_names=["action"],
                    dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}},
                    dynamo=False,
                )
    return path


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    p = argparse.ArgumentParser(prog="rlrun-export", description="Write a saved run's policy as one file.")
    p.add_argument("run_dir", help="an rlrun run directory")
    p.add_argument("--format", required=True, choices=FORMATS, help="torchscript (.pt) or onnx (.onnx)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest good one)")
    p.add_argument("--out", default=None, help="the file to write (default: RUN_DIR/export/policy_<step>.<ext>)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if not Path(args.run_dir).is_dir():
            raise UserError(f"{args.run_dir} is not a directory; give the directory of an rlrun run.")
        print(export(Path(args.run_dir), args.format, args.step, Path(args.out) if args.out else None))
    except UserError as e:
        print(f"rlrun-export: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
