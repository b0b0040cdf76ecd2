"""rlrun: a Hydra-config-driven experiment runner for offline and online reinforcement learning."""

__version__ = "0.1.0"


def load_policy(run_dir, step=None, device="cpu"):
    """A trained run's deterministic policy: numpy observations in, actions in the env's units out
    (see rlrun.policy)."""
    from rlrun.policy import load_policy as load

    return load(run_dir, step, device)
