"""oneDNN kernels for the critic ensemble's fp32 matmuls on CPU.

PyTorch runs fp32 matmuls on CPU through its BLAS (MKL in the official wheels). On AMD CPUs MKL
takes slower code paths than oneDNN (2.1x slower for a (7936 x 256) · (256 x 256) product on a
2-core Zen 5); on Intel the two are close. `linear_t` is a linear layer through oneDNN, forward and
backward, on feature-major activations: x_t is (in, rows), the transpose of the usual layout. In
that layout all three products of a layer (output, input gradient, weight gradient) are single
oneDNN calls on contiguous or transposed operands, with no transposing copies of the activations.

`use(choice)` sets the backend for the process: "auto" times both on a door-size product once and
keeps the faster. `enabled_for(x, layer_macs)` tells a network whether to take its oneDNN path:
only for layers big enough that one call per ensemble member pays off.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

_state = {"on": False}
CHOICES = ("auto", "onednn", "blas")  # device.cpu_matmul


def available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


@torch.library.custom_op("rlrun::mm_t", mutates_args=())
def mm_t(a: Tensor, b: Tensor) -> Tensor:
    """a (M, K) @ b (N, K)^T -> (M, N) in one oneDNN call (b may be a transposed view).

    A custom op, so torch.compile keeps it as one opaque call: inductor cannot lower oneDNN's linear
    on plain weights itself. In eager mode it costs the same as the bare call.
    """
    return torch.ops.mkldnn._linear_pointwise(a.contiguous(), b, None, "none", [], "")


@mm_t.register_fake
def _(a: Tensor, b: Tensor) -> Tensor:
    return a.new_empty(a.shape[0], b.shape[0])


class _LinearT(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_t: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """x_t (I, R), weight (I, O), bias (O,) or None -> y_t (O, R) = weight^T x_t + bias."""
        ctx.save_for_backward(x_t, weight)
        ctx.has_bias = bias is not None
        y_t = mm_t(weight.T.contiguous(), x_t.T)  # (O, I) @ (I, R) -> (O, R)
        return y_t.add_(bias.unsqueeze(1)) if bias is not None else y_t

    @staticmethod
    def backward(ctx, grad_t: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x_t, weight = ctx.saved_tensors
        grad_t = grad_t.contiguous()  # (O, R)
        dx_t = mm_t(weight.contiguous(), grad_t.T) if ctx.needs_input_grad[0] else None  # (I, O) @ (O, R) -> (I, R)
        dw = mm_t(x_t, grad_t) if ctx.needs_input_grad[1] else None  # (I, R) @ (R, O) -> (I, O)
        db = grad_t.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None  # (O, R) -> (O,)
        return dx_t, dw, db


def linear_t(x_t: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Feature-major linear layer: x_t (in, rows) -> (out, rows) = weight (in, out)^T x_t + bias."""
    return _LinearT.apply(x_t.contiguous(), weight, bias)


# Below this many multiply-adds per layer and ensemble member, one call per member costs more than oneDNN
# saves (2-core Zen 5: SAC's 256 rows at width 64-192 slower on oneDNN, even at 256, faster at 7936 rows).
MIN_LAYER_MACS = 2**24


def enabled_for(x: Tensor, layer_macs: int) -> bool:
    """Whether the oneDNN path is on and applies: x fp32 on CPU outside autocast, layers big enough."""
    return (
        _state["on"]
        and layer_macs >= MIN_LAYER_MACS
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
    )


class suspended:
    """Context: the oneDNN path is off within it (parallel seeds' vmapped updates, which it does not batch)."""

    def __enter__(self) -> None:
        self.was = _state["on"]
        _state["on"] = False

    def __exit__(self, *exc: object) -> None:
        _state["on"] = self.was


def current() -> str:
    """The backend in effect: "onednn" or "blas" (what `use` would be given to choose it again)."""
    return "onednn" if _state["on"] else "blas"


def _seconds(fn, repeats: int = 5) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return time.perf_counter() - start


def faster_than_blas(rows: int = 4096, width: int = 256) -> bool:
    """Whether oneDNN beats torch.mm on this CPU for a (rows x width) · (width x width) product."""
    x, w = torch.randn(rows, width), torch.randn(width, width)
    return _seconds(lambda: mm_t(x, w)) < 0.9 * _seconds(lambda: x @ w)


def use(choice: str) -> bool:
    """Set the backend: "onednn", "blas" or "auto" (time both). Returns whether oneDNN is on."""
    if choice not in CHOICES:
        raise ValueError(f"unknown CPU matmul backend {choice!r}; use auto, onednn or blas")
    if choice == "onednn" and not available():
        raise RuntimeError("this PyTorch build has no oneDNN linear")
    _state["on"] = choice == "onednn" or (choice == "auto" and available() and faster_than_blas())
    return _state["on"]
