"""Speed options keep the maths: compiled and bf16 updates agree with eager fp32 ones on CPU, the
CUDA-graph option asks for a GPU, and the allocator setting stops per-step page faults."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import make_cfg
from test_algos import ALGOS

from rlrun import onednn
from rlrun.accel import accelerate
from rlrun.algos.base import Batch
from rlrun.build import make_algo
from rlrun.data.online import Spaces
from rlrun.errors import UserError

SPACES = Spaces(obs_dim=6, act_dim=2, discrete=False)


def cql_and_batch(seed: int = 0):
    torch.manual_seed(seed)
    algo = make_algo(make_cfg("algo=cql", "env=pendulum", "network.hidden_sizes=[32,32]"), SPACES, torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    batch = Batch(
        torch.randn(64, 6, generator=g),
        torch.rand(64, 2, generator=g) * 2 - 1,
        torch.randn(64, generator=g),
        torch.randn(64, 6, generator=g),
        torch.zeros(64),
    )
    return algo, batch


def run_updates(update, batch, n: int = 3) -> list[dict]:
    out = []
    for i in range(n):
        torch.manual_seed(100 + i)
        out.append({k: v.detach().float().clone() for k, v in update(batch).items()})
    return out


@pytest.mark.parametrize(
    "amp,compile,tol,backend",
    [
        (False, True, 1e-4, "blas"),
        (True, False, 0.1, "blas"),
        pytest.param(
            False,
            True,
            1e-4,
            "onednn",
            marks=[pytest.mark.skipif(not onednn.available(), reason="no oneDNN"), pytest.mark.slow],  # ≈ 50 s
        ),
    ],
    ids=["compile", "bf16", "compile_onednn"],
)
def test_accelerated_update_matches_eager_fp32(amp, compile, tol, backend):
    """With device.cpu_matmul=onednn, the compiled update runs the oneDNN calls as an opaque custom op."""
    import torch._inductor.config

    onednn.use(backend)
    eager_algo, batch = cql_and_batch()
    eager = run_updates(eager_algo.update, batch)
    algo, _ = cql_and_batch()
    with torch._inductor.config.patch(fallback_random=True):  # compiled code draws eager's random numbers
        fast = run_updates(accelerate(algo.update, torch.device("cpu"), amp, compile, False), batch)
    for ref, got in zip(eager, fast):
        for key in ("train/critic_loss", "train/actor_loss", "train/q_mean", "train/cql_diff"):
            assert torch.isfinite(got[key])
            torch.testing.assert_close(got[key], ref[key], rtol=tol, atol=tol, msg=key)
    if not amp:  # the compiled update moved the weights exactly as eager did
        for p, q in zip(eager_algo.critic.parameters(), algo.critic.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_cuda_graphs_without_a_gpu_is_a_user_error():
    algo, _ = cql_and_batch()
    with pytest.raises(UserError, match="needs a CUDA device"):
        accelerate(algo.update, torch.device("cpu"), False, False, True)


def test_keep_freed_memory_cuts_page_faults_of_door_size_cql_updates():
    """Without the setting, glibc mmaps each temporary above its threshold and the kernel
    page-faults it in again on every update. The baseline pins glibc's static default threshold
    (128 KiB; setting it also switches off the dynamic threshold, whose level depends on the order
    of earlier frees and made this baseline vary from 3 000 to 44 000 faults per 2 updates). Each
    run reports the fewest faults of 4 windows of 2 updates, so a one-off heap growth does not count."""
    script = textwrap.dedent("""
        import resource, sys, torch
        from rlrun.accel import keep_freed_memory
        from rlrun import presets
        from rlrun.algos.base import Batch
        from rlrun.build import make_algo
        from rlrun.data.online import Spaces
        from rlrun.resolvers import register_resolvers
        from rlrun.schema import register_configs
        if sys.argv[1] == "keep":
            assert keep_freed_memory()
        register_resolvers(), register_configs()
        torch.manual_seed(0)
        cfg = presets.compose(["algo=cql", "env=pendulum", "network.hidden_sizes=[256,256,256]", "algo.n_actions=10"])
        algo = make_algo(cfg, Spaces(obs_dim=39, act_dim=28, discrete=False), torch.device("cpu"))
        batch = Batch(torch.randn(256, 39), torch.rand(256, 28) * 2 - 1, torch.randn(256),
                      torch.randn(256, 39), torch.zeros(256))
        for _ in range(3):
            algo.update(batch)
        windows = []
        for _ in range(4):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(2):
                algo.update(batch)
            windows.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        print(min(windows))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    modes = {"default": env | {"MALLOC_MMAP_THRESHOLD_": "131072"}, "keep": env}
    faults = {
        mode: int(
            subprocess.run(
                [sys.executable, "-c", script, mode], capture_output=True, text=True, env=menv, check=True
            ).stdout.split()[-1]
        )
        for mode, menv in modes.items()
    }
    assert faults["default"] > 2 * 20_000, faults  # ≈ 119 000 measured: MiBs of temporaries re-faulted per update
    assert faults["keep"] < 1_000, faults  # 0-1 measured: freed blocks are reused in place


@pytest.mark.slow  # about 2.5 min on 2 cores; the fast set compiles CQL above
@pytest.mark.parametrize("name", [n for n in ALGOS if "-" not in n or n == "option_critic-box"])
def test_every_algorithm_compiles_and_moves_weights_as_eager_does(name):
    """device.compile works for the whole contract suite, not only CQL (above): the compiled
    update runs (a single backward per update, so no freed saved tensors) and matches eager."""
    import torch._inductor.config
    from test_algos import _first, build, learned_modules, random_batch, update

    from rlrun import checkpoint

    spaces = ALGOS[name]
    eager, fast = build(name, spaces), build(name, spaces)
    compiled = accelerate(fast.update, torch.device("cpu"), False, True, False)
    batches = [random_batch(spaces) for _ in range(2)]
    with torch._inductor.config.patch(fallback_random=True):
        for i, batch in enumerate(batches):
            torch.manual_seed(i)
            want = update(eager, batch)
            torch.manual_seed(i)
            got = compiled(batch, _first(batch)) if fast.learns_from_latest else compiled(batch)
            for key in want:
                torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-5, msg=key)
    for module in learned_modules(eager):
        for key, value in checkpoint.collect(eager)[module].items():
            torch.testing.assert_close(checkpoint.collect(fast)[module][key], value, rtol=1e-4, atol=1e-5, msg=key)
